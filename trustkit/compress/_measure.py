"""Inference cost of a model: latency, throughput, memory and size, timed in blocks of calls."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .._validation import check_int, check_positive, resolve_device
from ._core import model_bytes

__all__ = ["inference_cost"]


def _activation_peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Largest (input + output) bytes of any leaf module during one forward pass.

    Without autograd a forward pass holds little more than the tensor flowing into a layer and the
    one coming out, so this is the activation memory an inference needs beyond the weights.
    """
    peak = 0

    def nbytes(t) -> int:
        if isinstance(t, torch.Tensor):
            return t.numel() * t.element_size()
        if isinstance(t, (tuple, list)):
            return sum(nbytes(u) for u in t)
        return 0

    def hook(_m, inp, out):
        nonlocal peak
        peak = max(peak, nbytes(inp) + nbytes(out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return int(peak)


def _block_times(call, min_run_time: float, sync) -> np.ndarray:
    """Per-call seconds of blocks of ``call()``: blocks of about a millisecond (at least one call),
    at least five of them, until ``min_run_time`` seconds have passed; ``sync`` waits for the device."""
    sync()
    t = time.perf_counter()
    call()
    sync()
    one = max(time.perf_counter() - t, 1e-7)
    number = max(1, int(1e-3 / one))
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_run_time:
        t = time.perf_counter()
        for _ in range(number):
            call()
        sync()
        times.append((time.perf_counter() - t) / number)
    return np.asarray(times)


def inference_cost(model: nn.Module, input_shape, *, batch_sizes=(1, 256), min_run_time: float = 0.2,
                   threads: int | None = None, device=None, seed: int = 0) -> dict:
    """Latency (median and p95), throughput, memory and bytes of ``model`` at each batch size.

    Each batch size is timed in blocks of calls of about a millisecond each (after a warm-up
    call), at least five blocks and until ``min_run_time`` seconds have passed: the median and
    95th percentile are over the blocks' per-call times. (``torch.utils.benchmark``'s
    ``blocked_autorange`` first grows its block until the timer's overhead is below 0.01%, which
    costs a small model half a second per batch size whatever ``min_run_time`` says.) ``threads`` is the torch thread count used for timing (default:
    the process's current one) and is recorded, since latency depends on it. Inputs are random
    (the models here do the same work whatever the values). Memory: ``model_bytes`` (the saved
    state dict) and ``activation_mb@B``, the largest layer input + output at batch size B (an
    estimate of inference activations beyond the weights; on CUDA the allocator's measured peak).

    Returns a flat dict (``latency_ms@1``, ``latency_p95_ms@1``, ``throughput@256``, …) that joins a
    run's record.

    Examples
    --------
    >>> from trustkit.models import make_model
    >>> cost = inference_cost(make_model("mlp", input_shape=(8,), n_classes=2), (8,),
    ...                       batch_sizes=(1,), min_run_time=0.01)
    >>> sorted(k for k in cost if k.endswith("@1"))
    ['activation_mb@1', 'latency_ms@1', 'latency_p95_ms@1', 'throughput@1']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    sizes = [check_int("batch_sizes", b, minimum=1) for b in batch_sizes]
    if not sizes:
        raise ValueError("batch_sizes must name at least one batch size")
    check_positive("min_run_time", min_run_time)
    threads = torch.get_num_threads() if threads is None else check_int("threads", threads, minimum=1)
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    on = next((p.device for p in model.parameters()), dev)
    if on.type != dev.type:
        raise ValueError(f"device={str(dev)!r} but the model is on {str(on)!r}; move it first (model.to(device))")
    gen = torch.Generator().manual_seed(seed)
    out = {"model_bytes": model_bytes(model), "threads": threads, "device": dev.type}
    caller_threads = torch.get_num_threads()
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    try:
        torch.set_num_threads(threads)
        for b in sizes:
            x = torch.rand((b, *tuple(input_shape)), generator=gen).to(dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            with torch.no_grad():
                model(x)  # warm-up (lazy initialisation, caches)
            with torch.no_grad():
                times = _block_times(lambda: model(x), min_run_time, sync)
            median = float(np.median(times))
            out[f"latency_ms@{b}"] = 1e3 * median
            out[f"latency_p95_ms@{b}"] = 1e3 * float(np.percentile(times, 95))
            out[f"throughput@{b}"] = b / median
            if dev.type == "cuda":
                out[f"activation_mb@{b}"] = torch.cuda.max_memory_allocated(dev) / 2**20
            else:
                out[f"activation_mb@{b}"] = _activation_peak_bytes(model, x) / 2**20
    finally:
        torch.set_num_threads(caller_threads)
        model.train(was_training)
    return out
