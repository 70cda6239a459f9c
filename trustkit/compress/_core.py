"""What every compression operation returns: the new model, what it cost and what it saved."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Compressed", "footprint", "model_bytes", "weight_bytes", "copy_model", "prunable_layers"]


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's ``state_dict`` as ``torch.save`` writes it: the size a user ships.

    Quantised weights count at their stored width (int8 packs one byte per weight), and a pruned
    weight stored densely still counts its zeros.

    >>> model_bytes(nn.Linear(256, 256)) > 4 * 256 * 256
    True
    """
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _tensor_bytes(value) -> int:
    if isinstance(value, (tuple, list)):  # packed parameters of quantised kernels: (weight, bias)
        return sum(_tensor_bytes(v) for v in value)
    if not isinstance(value, torch.Tensor):
        return 0
    if type(value) not in (torch.Tensor, nn.Parameter) and hasattr(value, "__tensor_flatten__"):
        names, _ = value.__tensor_flatten__()  # a tensor subclass (torchao): the tensors it stores
        return sum(_tensor_bytes(getattr(value, n)) for n in names)
    n = value.numel() * value.element_size()
    if value.is_quantized and value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                                  torch.per_channel_affine_float_qparams):
        n += _tensor_bytes(value.q_per_channel_scales()) + _tensor_bytes(value.q_per_channel_zero_points())
    return n


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the tensors in the model's ``state_dict`` at their stored width: what compression
    acts on, without the file format's overhead that :func:`model_bytes` includes.

    int8 weights count one byte each (with their scales), a torchao tensor subclass the tensors it
    stores, a pruned weight stored densely all its zeros. For a small model the two differ a lot: an
    MLP with 770 float32 parameters has 3,080 bytes of weights in a file of about 5,400 bytes.

    >>> weight_bytes(nn.Linear(256, 256)) == 4 * (256 * 256 + 256)
    True
    """
    return int(sum(_tensor_bytes(v) for v in model.state_dict().values()))


def _weights(model: nn.Module):
    for p in model.parameters():
        if p.dtype.is_floating_point:
            yield p.detach()


def _nonzero(p: torch.Tensor) -> int:
    if type(p) is torch.Tensor or type(p) is nn.Parameter:
        return int(torch.count_nonzero(p))
    return int(p.numel())  # a quantised tensor subclass: its zeros are not pruned weights


def footprint(model: nn.Module) -> dict:
    """Parameters (all and non-zero), bytes of the stored tensors (:func:`weight_bytes`) and of the
    ``torch.save`` file (:func:`model_bytes`) of ``model``.

    >>> f = footprint(nn.Linear(3, 2))
    >>> f["params"], f["nonzero_params"] <= 8
    (8, True)
    """
    params = sum(p.numel() for p in _weights(model))
    nonzero = sum(_nonzero(p) for p in _weights(model))
    return {"params": int(params), "nonzero_params": int(nonzero), "weight_bytes": weight_bytes(model),
            "bytes": model_bytes(model)}


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode: compression never changes the model it was given."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return copy.deepcopy(model).eval()


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv layers of ``model`` (the weights pruning and quantisation act on)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]


@dataclass
class Compressed:
    """A compressed model and what the operation cost and saved.

    Attributes
    ----------
    model : nn.Module
        The new model (the original is never modified).
    method : str
        ``"dense"``, ``"prune_unstructured"``, ``"prune_structured"``, ``"quantize"``, ``"distill"``…
    settings : dict
        The operation's arguments (sparsity, scheme, temperature…).
    before, after : dict
        :func:`footprint` of the original and the new model (``weight_bytes``: the stored tensors;
        ``bytes``: the ``torch.save`` file).
    cost_s : float
        Wall seconds the operation took (fine-tuning or distillation training included).
    notes : str
        What the operation really does, in a sentence (e.g. which kernel runs).
    differentiable : bool
        Whether gradients flow through the model (quantised kernels have none; attacks then use
        the dense model's gradients, see :func:`~trustkit.compress.attack_surrogate`).
    """

    model: nn.Module
    method: str
    settings: dict
    before: dict
    after: dict
    cost_s: float
    notes: str = ""
    differentiable: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def param_ratio(self) -> float:
        return self.after["params"] / max(self.before["params"], 1)

    @property
    def bytes_ratio(self) -> float:
        return self.after["bytes"] / max(self.before["bytes"], 1)

    @property
    def weight_bytes_ratio(self) -> float:
        return self.after["weight_bytes"] / max(self.before["weight_bytes"], 1)

    @property
    def saves_memory(self) -> bool:
        """Whether the new model's stored tensors are smaller than the original's (derived, never
        declared): False where compression is only simulated (masks stored densely, 4-bit levels kept
        in float32) — such a model computes like a compressed one but is no smaller."""
        return self.after["weight_bytes"] < self.before["weight_bytes"]

    @property
    def sparsity(self) -> float:
        """Share of the original's parameters that are gone or zero."""
        return 1.0 - self.after["nonzero_params"] / max(self.before["params"], 1)

    def to_dict(self) -> dict:
        """A flat record (for a run's record or a DataFrame row)."""
        out = {"method": self.method, **{f"setting_{k}": v for k, v in self.settings.items()}}
        out.update({f"{k}_before": v for k, v in self.before.items()})
        out.update({f"{k}_after": v for k, v in self.after.items()})
        out.update(param_ratio=self.param_ratio, bytes_ratio=self.bytes_ratio, weight_bytes_ratio=self.weight_bytes_ratio,
                   sparsity=self.sparsity,
                   cost_s=self.cost_s, saves_memory=self.saves_memory, differentiable=self.differentiable,
                   notes=self.notes)
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return (f"Compressed(method={self.method!r}, settings={self.settings}, params {self.before['params']:,}"
                f"→{self.after['params']:,}, bytes {self.before['bytes']:,}→{self.after['bytes']:,})")
