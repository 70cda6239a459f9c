"""Robustness metrics: ℓ∞ FGSM and PGD attacks, corruption accuracy, feature-noise accuracy.

Attacks follow Goodfellow et al. (2015, FGSM) and Madry et al. (2018, PGD with a uniform random
start in the ε-ball and step size 2.5·ε/steps). Images are clamped to [0, 1]; standardised tabular
features are not clamped (ε is then in standard deviations of each feature). Evaluation attacks
should be stronger than training attacks: the defaults use 20 PGD steps.
"""

from __future__ import annotations

import warnings

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._validation import check_int, check_positive, resolve_device

__all__ = [
    "predict_logits",
    "fgsm",
    "pgd",
    "adversarial_accuracy",
    "attack_table",
    "corruption_table",
    "feature_noise_accuracy",
    "attack_geometry",
]


def attack_geometry(task) -> tuple[tuple[float, float] | None, torch.Tensor | None]:
    """``(bounds, mask)`` of ℓ∞ attacks on a task's inputs.

    Images: pixels stay in ``[0, 1]``, every pixel may move. Tables: no clamp (features are
    standardised, so ε is in standard deviations) and only the numeric columns move, so that one-hot
    categories stay valid categories.

    >>> from trustkit.data import load_german
    >>> bounds, mask = attack_geometry(load_german(seed=0))
    >>> bounds is None, int(mask.sum()) == len(load_german(seed=0).numeric_columns)
    (True, True)
    """
    if task.kind == "image":
        return (0.0, 1.0), None
    mask = torch.zeros(task.input_shape[0])
    mask[list(task.numeric_columns)] = 1.0
    return None, mask


def _model_device(model: torch.nn.Module, default=None) -> torch.device:
    """The device of the model's first parameter (else first buffer); ``default`` (else the CPU)
    for a model with neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu") if default is None else default


def _run_device(model: torch.nn.Module, device) -> torch.device:
    """``device`` checked against the model's device, or the model's device when ``device`` is None."""
    on = _model_device(model)
    if device is None:
        return on
    dev = resolve_device(device)
    has_state = any(True for _ in model.parameters()) or any(True for _ in model.buffers())
    if has_state and (dev.type != on.type or (dev.index is not None and on.index is not None and dev.index != on.index)):
        raise ValueError(f"device={str(dev)!r} but the model's parameters are on {str(on)!r}; move the model "
                         "there first (model.to(device)) or leave device=None to use the model's device")
    return dev


@torch.no_grad()
def predict_logits(model: torch.nn.Module, X, *, batch_size: int = 1024, device=None) -> torch.Tensor:
    """Logits of ``model`` on ``X`` in eval mode, batched; restores the model's mode afterwards.

    Parameters
    ----------
    model : torch.nn.Module
    X : array-like or torch.Tensor
        Inputs; they may live on the CPU whatever the model's device.
    batch_size : int
        Rows per forward pass.
    device : None, str or torch.device
        Where the forward passes run; ``None`` (default) uses the device of the model's
        parameters (the CPU for a model without any). Each batch of ``X`` is moved there in turn.

    Returns
    -------
    torch.Tensor
        The logits ``(n, n_classes)``, on the CPU. No gradient flows through them.
    """
    dev = _run_device(model, device)
    was_training = model.training
    model.eval()
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X, dtype=torch.float32)
    try:
        out = [model(X[i : i + batch_size].to(dev)).cpu() for i in range(0, len(X), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def _clamp(x: torch.Tensor, bounds):
    return x if bounds is None else x.clamp(bounds[0], bounds[1])


def _input_grad(model, x, y) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    # the model sees a non-leaf view of x: torch's FlopCounterMode (used to charge a training step's
    # cost) hooks module inputs, and autograd.grad refuses such hooks on a leaf
    loss = F.cross_entropy(model(x.view_as(x)), y)
    grad = None
    if loss.requires_grad:
        with warnings.catch_warnings():  # quantised kernels warn that they have no autograd kernel
            warnings.filterwarnings("ignore", message=".*autograd kernel was not registered.*")
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    if grad is None:
        raise TypeError(
            "the model has no gradient with respect to its inputs (an int8-quantised model, say), so a gradient "
            "attack cannot run on it; attack it through the model it was made from: "
            "trustkit.compress.attack_surrogate(model, dense_model)"
        )
    return grad


def _mask(t: torch.Tensor, mask) -> torch.Tensor:
    if mask is None:
        return t
    return t * (mask.to(t.device) if isinstance(mask, torch.Tensor) else mask)


def fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, bounds=(0.0, 1.0), mask=None) -> torch.Tensor:
    r"""Fast gradient sign method: :math:`x' = x + \epsilon\,\mathrm{sign}(\nabla_x \ell(f(x), y))`.

    ``bounds`` clamps the result (``None`` for unbounded features). ``mask`` (0/1, broadcastable to
    ``x``) restricts the perturbation to some features, e.g. the numeric columns of a table.
    The model should be in eval mode. The attack runs on the model's device (``x`` and ``y`` are
    moved there); the result is on ``x``'s device.
    """
    check_positive("eps", eps)
    dev = _model_device(model, default=x.device)
    xd, yd = x.to(dev), y.to(dev)
    return _clamp(xd + eps * _mask(_input_grad(model, xd, yd).sign(), mask), bounds).detach().to(x.device)


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 20,
    step_size: float | None = None,
    random_start: bool = True,
    bounds=(0.0, 1.0),
    mask=None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    r"""Projected gradient descent in the ℓ∞ ball of radius ε (Madry et al. 2018).

    Starts at a uniform point of the ball (``random_start``), then ``steps`` times
    :math:`x \leftarrow \Pi_{B_\epsilon(x_0)}(x + \alpha\,\mathrm{sign}\nabla_x\ell)` with
    :math:`\alpha` = ``step_size`` (default 2.5·ε/steps). ``mask`` as in :func:`fgsm`.

    The attack runs on the model's device (``x`` and ``y`` are moved there); the result is on
    ``x``'s device. The random start is drawn from ``generator`` on the generator's own device and
    then moved, so a seed gives the same start whatever the model's device (on the meta device of
    a FLOP count the start is drawn there, and the generator is left untouched). A sequence of
    generators draws the start of each slice ``x[i]`` from its own one, as ``len(generator)``
    separate attacks on ``x[i]`` would (replicas attacked at once).
    """
    check_positive("eps", eps)
    check_int("steps", steps, minimum=1)
    alpha = 2.5 * eps / steps if step_size is None else check_positive("step_size", step_size)
    dev = _model_device(model, default=x.device)
    x0, y = x.detach().to(dev), y.to(dev)
    if random_start:
        if x0.device.type == "meta" or generator is None:
            noise = torch.rand(x0.shape, dtype=x0.dtype, device=x0.device)
        elif isinstance(generator, (list, tuple)):
            if len(generator) != len(x0):
                raise ValueError(f"generator: one per slice of x ({len(x0)}); got {len(generator)}")
            noise = torch.stack([torch.rand(x0.shape[1:], generator=g, dtype=x0.dtype, device=g.device)
                                 for g in generator]).to(x0.device)
        else:
            noise = torch.rand(x0.shape, generator=generator, dtype=x0.dtype, device=generator.device).to(x0.device)
        noise = noise * 2 - 1
        xa = _clamp(x0 + eps * _mask(noise, mask), bounds)
    else:
        xa = x0.clone()
    for _ in range(steps):
        xa = xa + alpha * _mask(_input_grad(model, xa, y).sign(), mask)
        xa = _clamp(torch.min(torch.max(xa, x0 - eps), x0 + eps), bounds).detach()
    return xa.to(x.device)


def adversarial_accuracy(
    model: torch.nn.Module,
    X,
    y,
    eps: float,
    *,
    attack: str = "pgd",
    steps: int = 20,
    bounds=(0.0, 1.0),
    mask=None,
    batch_size: int = 512,
    seed: int = 0,
    device=None,
) -> float:
    """Accuracy of ``model`` on ``X`` perturbed by an ℓ∞ ``attack`` ("fgsm" or "pgd") of radius ``eps``.

    The attacks run on ``device``: ``None`` (default) is the device of the model's parameters;
    ``X`` and ``y`` may live on the CPU (each batch is moved there in turn). The random starts come
    from a CPU generator seeded with ``seed``, so the result does not depend on the device beyond
    floating-point differences.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> X, y = torch.randn(50, 2), torch.randint(0, 2, (50,))
    >>> adversarial_accuracy(model, X, y, 0.1, attack="pgd", bounds=None) <= adversarial_accuracy(
    ...     model, X, y, 1e-6, attack="pgd", bounds=None) + 1e-9
    True
    """
    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm' or 'pgd'; got {attack!r}")
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y, dtype=torch.long)
    dev = _run_device(model, device)
    if isinstance(mask, torch.Tensor):
        mask = mask.to(dev)
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    try:
        for i in range(0, len(X), batch_size):
            xb, yb = X[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)
            if attack == "fgsm":
                xa = fgsm(model, xb, yb, eps, bounds=bounds, mask=mask)
            else:
                xa = pgd(model, xb, yb, eps, steps=steps, bounds=bounds, mask=mask, generator=gen)
            with torch.no_grad():
                correct += int((model(xa).argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    return correct / len(y)


def attack_table(
    model: torch.nn.Module,
    X,
    y,
    eps: Sequence[float],
    *,
    attacks: Iterable[str] = ("fgsm", "pgd"),
    steps: int = 20,
    bounds=(0.0, 1.0),
    mask=None,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy under each attack at each ε, plus the clean accuracy (ε = 0), as a tidy table."""
    clean = float((predict_logits(model, X).argmax(1) == torch.as_tensor(np.asarray(y))).double().mean())
    rows = [{"attack": "clean", "eps": 0.0, "accuracy": clean}]
    for attack in attacks:
        for e in eps:
            acc = adversarial_accuracy(model, X, y, float(e), attack=attack, steps=steps, bounds=bounds, mask=mask, seed=seed)
            rows.append({"attack": attack, "eps": float(e), "accuracy": acc})
    return pd.DataFrame(rows)


def corruption_table(
    model: torch.nn.Module,
    X,
    y,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Accuracy per corruption and severity (CIFAR-10-C style) as a tidy table.

    The mean over rows is the usual "mean corruption accuracy".
    """
    from ..data import CORRUPTION_FAMILY, CORRUPTIONS, corrupt_images

    corruptions = CORRUPTIONS if corruptions is None else tuple(corruptions)
    y_t = torch.as_tensor(np.asarray(y))
    pairs = [(c, s) for c in corruptions for s in severities]
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc="corruptions", leave=False)
    rows = []
    for c, s in pairs:
        Xc = corrupt_images(np.asarray(X), c, int(s), seed=seed)
        acc = float((predict_logits(model, Xc).argmax(1) == y_t).double().mean())
        rows.append({"corruption": c, "family": CORRUPTION_FAMILY[c], "severity": int(s), "accuracy": acc})
    return pd.DataFrame(rows)


def feature_noise_accuracy(model: torch.nn.Module, X, y, std: float, *, seed: int = 0, columns=None) -> float:
    """Accuracy on tabular features with Gaussian noise of standard deviation ``std`` added
    (to ``columns`` only, if given)."""
    from ..data import feature_noise

    Xn = feature_noise(np.asarray(X), std, seed=seed, columns=columns)
    return float((predict_logits(model, Xn).argmax(1) == torch.as_tensor(np.asarray(y))).double().mean())
