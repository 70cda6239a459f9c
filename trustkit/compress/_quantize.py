"""Post-training quantisation: int8 (dynamic, static with calibration), 4-bit weights, simulated 4-bit."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from .._validation import check_choice, check_int
from ._core import Compressed, copy_model, footprint, prunable_layers

__all__ = ["quantize", "SCHEMES", "fake_quantize_weights", "cpu_has_int8_dot"]

#: ``int8_dynamic``: int8 weights, activations quantised per batch at run time (Linear layers);
#: ``int8_static``: int8 weights and activations with scales calibrated on data (Linear and Conv);
#: ``int4_weight``: 4-bit weights (Linear layers), activations in float;
#: ``int4_simulated``: weights rounded to 4-bit levels but kept in float32 (no saving at all).
SCHEMES = ("int8_dynamic", "int8_static", "int4_weight", "int4_simulated")
BACKENDS = ("auto", "torchao", "torch.ao")
# oneDNN instruction-set caps without an int8 dot-product instruction (VNNI)
_NO_VNNI_ISA = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def cpu_has_int8_dot() -> bool:
    """Whether this CPU has an int8 dot-product instruction (x86 VNNI or AMX-INT8) that oneDNN may use.

    torchao's dynamic int8 kernels lost accuracy without one: with oneDNN capped at AVX2 (as on
    Skylake-era Intel and AMD chips before Zen 4) the logits of a 512-wide MLP were off by up to
    0.13 (mean 0.04) against 0.008 with VNNI, and 10% of its predictions changed; PyTorch's own
    dynamic int8 kernels stayed within 0.02 either way. ``ONEDNN_MAX_CPU_ISA`` set to an
    instruction set without VNNI counts as none. Read from ``/proc/cpuinfo``; elsewhere False.
    """
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap in _NO_VNNI_ISA:
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def fake_quantize_weights(model: nn.Module, *, bits: int = 4) -> nn.Module:
    """Round every Linear/Conv weight (in place) to ``2**bits`` symmetric levels per output channel.

    The weights stay float32: the model *computes* like a ``bits``-bit one (same rounding error)
    but takes the same memory and time as the float model. Returns ``model``.

    >>> m = fake_quantize_weights(nn.Linear(8, 3), bits=2)
    >>> [len(torch.unique(row)) <= 4 for row in m.weight]
    [True, True, True]
    """
    check_int("bits", bits, minimum=2, maximum=16)
    qmax = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for _, m in prunable_layers(model):
            w = m.weight
            flat = w.reshape(w.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / qmax
            q = torch.clamp(torch.round(flat / scale[:, None]), -qmax - 1, qmax)
            w.copy_((q * scale[:, None]).reshape(w.shape))
    return model


def _calibration_batches(calibration, input_shape, n: int, batch_size: int = 256):
    X = getattr(calibration, "X", calibration)
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X, dtype=torch.float32)
    if input_shape is not None and tuple(X.shape[1:]) != tuple(input_shape):
        raise ValueError(f"calibration inputs have shape {tuple(X.shape[1:])}; the model takes {tuple(input_shape)}")
    X = X[:n]
    return [X[i : i + batch_size] for i in range(0, len(X), batch_size)]


def quantize(model: nn.Module, *, scheme: str, calibration=None, n_calibration: int = 2048,
             backend: str = "auto", group_size: int | None = None) -> Compressed:
    """Quantise a trained model after training (post-training quantisation); return a new model.

    Parameters
    ----------
    scheme : {"int8_dynamic", "int8_static", "int4_weight", "int4_simulated"}
        * ``int8_dynamic``: Linear weights stored in int8, activations quantised per batch at run
          time. ``backend="torchao"`` uses torchao's ``Int8DynamicActivationInt8WeightConfig``;
          ``"torch.ao"`` PyTorch's ``quantize_dynamic`` (fbgemm/x86 kernels); ``"auto"`` (the
          default) torchao on a GPU or a CPU with an int8 dot-product instruction
          (:func:`cpu_has_int8_dot`), else torch.ao, whose results do not depend on it (torchao on
          a CPU without one warns). Convolutions stay
          float32. On CPU torchao's int8 path ran *slower* than float32 for the small models here
          (its kernels target GPUs); ``inference_cost`` measures it, it is not assumed.
        * ``int8_static``: weights and activations of Linear and Conv layers in int8, activation
          scales calibrated on ``calibration`` (the training split, say), through PyTorch's FX
          graph mode (x86 kernels). torchao's successor path (PT2E) produces a reference graph
          that only becomes fast once compiled with inductor; measured here uncompiled it was ~2×
          slower than float32 and larger, so the FX path (deprecated in PyTorch, still shipped in
          2.14) is used; its deprecation warning is silenced.
        * ``int4_weight``: Linear weights quantised to 4-bit levels with one scale per output
          channel, or per ``group_size`` weights when given (it must divide every layer's inputs) (torchao ``IntxWeightOnlyConfig(weight_dtype=torch.int4)``). torchao
          stores the 4-bit values unpacked, one per int8 byte, so the model is about the size of
          an int8 one: the *accuracy* is that of 4-bit weights, the *memory* that of 8-bit.
        * ``int4_simulated``: every Linear/Conv weight rounded to 4-bit levels per output channel
          but kept in float32 (:func:`fake_quantize_weights`). It shows what 4-bit rounding does
          to accuracy, fairness and robustness; it **saves no memory and no time**.
    calibration : Split or array, optional
        Inputs for ``int8_static`` (required there); the first ``n_calibration`` rows are used.

    Quantised kernels have no gradients: robust accuracy of such a model is measured with the
    dense model's gradients (:func:`~trustkit.compress.attack_surrogate`).

    Examples
    --------
    >>> from trustkit.models import make_model
    >>> dense = make_model("mlp", input_shape=(64,), n_classes=2, hidden=256, seed=0)
    >>> q = quantize(dense, scheme="int8_dynamic", backend="torch.ao")
    >>> round(q.bytes_ratio, 1)
    0.3
    """
    check_choice("scheme", scheme, SCHEMES)
    check_choice("backend", backend, BACKENDS)
    check_int("n_calibration", n_calibration, minimum=1)
    if group_size is not None:
        check_int("group_size", group_size, minimum=1)
    if scheme == "int8_static" and calibration is None:
        raise ValueError("scheme='int8_static' needs calibration= inputs (e.g. task.train) to set activation scales")
    t0 = time.perf_counter()
    before = footprint(model)
    new = copy_model(model)
    if not prunable_layers(new):
        raise ValueError("the model has no Linear or Conv layers to quantise")
    settings: dict = {"scheme": scheme}
    differentiable, notes = False, ""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quant_min and quant_max.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        if scheme == "int8_dynamic":
            on_gpu = any(p.is_cuda for p in new.parameters())
            if backend == "auto":
                backend = "torchao" if on_gpu or cpu_has_int8_dot() else "torch.ao"
            elif backend == "torchao" and not on_gpu and not cpu_has_int8_dot():
                warnings.warn("torchao's int8 kernels lose accuracy on a CPU without an int8 dot-product instruction "
                              "(VNNI): expect logits off by up to ~0.1; backend='torch.ao' does not depend on it",
                              UserWarning, stacklevel=2)
            settings["backend"] = backend
            if backend == "torchao":
                from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

                quantize_(new, Int8DynamicActivationInt8WeightConfig())
                notes = "torchao int8 weights, dynamic int8 activations (Linear layers; Conv stays float32)"
            else:
                new = torch.ao.quantization.quantize_dynamic(new, {nn.Linear}, dtype=torch.qint8)
                notes = "PyTorch dynamic int8 (fbgemm/x86 kernels; Linear layers; Conv stays float32)"
        elif scheme == "int8_static":
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            input_shape = _input_shape(new)
            batches = _calibration_batches(calibration, input_shape, n_calibration)
            settings["n_calibration"] = int(sum(len(b) for b in batches))
            prepared = prepare_fx(new, get_default_qconfig_mapping("x86"), (batches[0][:1],))
            with torch.no_grad():
                for b in batches:
                    prepared(b)
            new = convert_fx(prepared)
            notes = "PyTorch FX static int8 (x86 kernels), activation scales calibrated on data"
        elif scheme == "int4_weight":
            from torchao.quantization import IntxWeightOnlyConfig, quantize_
            from torchao.quantization.granularity import PerAxis, PerGroup

            settings["group_size"] = group_size
            if group_size is None:
                granularity = PerAxis(0)
            else:
                bad = [n for n, m in prunable_layers(new) if isinstance(m, nn.Linear) and m.in_features % group_size]
                if bad:
                    raise ValueError(f"group_size={group_size} must divide the inputs of every Linear layer; it does "
                                     f"not for {bad}; pass a divisor or group_size=None (one scale per output channel)")
                granularity = PerGroup(group_size)
            quantize_(new, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=granularity))
            notes = ("torchao 4-bit weight levels, stored unpacked one per int8 byte: int8-sized model "
                     "(Linear layers; Conv stays float32)")
        else:
            fake_quantize_weights(new, bits=4)
            differentiable = True
            notes = "simulated 4-bit: weights rounded to 4-bit levels, kept float32 (no memory or time saved)"
    after = footprint(new)
    after["params"] = before["params"]  # quantisation changes the width of weights, not their number
    after["nonzero_params"] = min(after["nonzero_params"], before["params"]) if differentiable else before["nonzero_params"]
    return Compressed(model=new.eval(), method="quantize", settings=settings, before=before, after=after,
                      cost_s=time.perf_counter() - t0, notes=notes, differentiable=differentiable)


def _input_shape(model: nn.Module):
    first = prunable_layers(model)[0][1]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    return None  # images: the calibration data's own shape is used
