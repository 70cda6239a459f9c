"""Per-sample gradients and VTruST value features.

Sign convention (used everywhere in :mod:`trustkit.select`): a feature is the *decrease* of a
value-function loss caused by one SGD step on a training point. A step ``θ ← θ − η g_i`` changes
the loss ``l_j`` of value component ``j`` by ``−η g_i·∇l_j`` to first order, so the first-order
(TracIn, Pruthi et al. 2020) feature is ``s_ij = η g_i·G_j`` and a positive feature means the
point helps. VTruST's paper feature is ``s_ij + s_ij²/2`` (Das et al. 2024, eq. after (1)); that
second term is the paper's own formula, not a true second-order Taylor term (which would be
``η²/2 · g_iᵀ H g_j``), so both are offered and can be compared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .._validation import check_choice, check_int, check_positive

__all__ = ["per_sample_grads", "penultimate", "random_projection", "sample_grads", "value_features",
           "normalise_columns", "label_values"]

_SCOPES = ("last_layer", "full")
_KINDS = ("paper", "tracin")


def _linear_head_grads(head: torch.nn.Linear, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy gradients of a linear head in closed form: ``(p − onehot(y)) ⊗ h`` for the
    weight (row-major, as ``named_parameters`` orders it) and ``p − onehot(y)`` for the bias."""
    with torch.no_grad():
        e = torch.softmax(head(h), dim=1)
        e[torch.arange(len(y)), y] -= 1.0
        w = (e[:, :, None] * h[:, None, :]).reshape(len(y), -1)
        return torch.cat([w, e], dim=1) if head.bias is not None else w


def penultimate(model: torch.nn.Module, x: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
    """``model.features(x)`` without autograd, ``chunk`` rows at a time, in the model's current mode.

    A 2-d max-pooling layer of a :class:`~torch.nn.Sequential` ``features`` gets its input in
    channels-last memory format: the same values (a maximum is exact), but PyTorch's CPU kernel
    is several times faster on that layout than on the default one, and the pooling layers take most
    of a small CNN's forward time. Chunks of a few hundred images keep the activations in cache.
    """
    seq = model.features
    layers = list(seq) if isinstance(seq, torch.nn.Sequential) else None
    out = []
    with torch.no_grad():
        for s in range(0, len(x), chunk):
            h = x[s : s + chunk]
            if layers is None:
                out.append(seq(h))
                continue
            for layer in layers:
                if isinstance(layer, torch.nn.MaxPool2d) and h.dim() == 4:
                    h = h.contiguous(memory_format=torch.channels_last)
                h = layer(h)
            out.append(h.contiguous())
    return out[0] if len(out) == 1 else torch.cat(out)


def per_sample_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, scope: str = "last_layer",
                     closed_form: bool = True, return_logits: bool = False):
    """Gradient of each example's cross-entropy loss, one row per example, with ``torch.func``.

    Parameters
    ----------
    model : nn.Module
        For ``scope="last_layer"`` the model must have ``features`` and ``head`` (all trustkit
        models do); the gradient is taken with respect to the head's weight and bias only.
    x, y : Tensor
        A batch of inputs and integer labels.
    scope : {"last_layer", "full"}
    closed_form : bool
        For a linear last layer, the gradient ``(p − onehot(y)) ⊗ [h, 1]`` directly (the same
        numbers as ``torch.func``, about 5× faster); ``False`` always uses ``vmap(grad(...))``.
    return_logits : bool
        Also return the logits in eval mode; with ``scope="last_layer"`` they come from the same
        forward pass as the gradients (the head applied to the penultimate features).

    Returns
    -------
    Tensor of shape (batch, n_params), or ``(grads, logits)`` with ``return_logits``
        Computed in eval mode (no dropout), in closed form or with ``vmap(grad(...))``: no Python
        loop over examples. The penultimate features come from :func:`penultimate`.

    Examples
    --------
    >>> import torch
    >>> from trustkit.models import make_model
    >>> m = make_model("mlp", input_shape=(5,), n_classes=2, seed=0)
    >>> per_sample_grads(m, torch.zeros(3, 5), torch.tensor([0, 1, 1])).shape
    torch.Size([3, 130])
    """
    check_choice("scope", scope, _SCOPES)
    was_training = model.training
    model.eval()
    try:
        if scope == "last_layer":
            if not (hasattr(model, "features") and hasattr(model, "head")):
                raise ValueError("scope='last_layer' needs a model with .features and .head; use scope='full'")
            inputs = penultimate(model, x)
            module = model.head
            if return_logits:
                with torch.no_grad():
                    logits = module(inputs)
            if isinstance(module, torch.nn.Linear) and closed_form:
                g = _linear_head_grads(module, inputs, y)
                return (g, logits) if return_logits else g
        else:
            inputs, module = x, model
            if return_logits:
                with torch.no_grad():
                    logits = model(x)
        params = {k: v.detach() for k, v in module.named_parameters()}

        def loss(p, xi, yi):
            out = functional_call(module, p, (xi.unsqueeze(0),))
            return F.cross_entropy(out, yi.unsqueeze(0))

        g = vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs, y)
    finally:
        model.train(was_training)
    g = torch.cat([g[k].reshape(len(y), -1) for k in params], dim=1)
    return (g, logits) if return_logits else g


def random_projection(g: torch.Tensor, dim: int, *, seed: int = 0) -> torch.Tensor:
    """Project gradients to ``dim`` dimensions with a seeded Gaussian matrix (Johnson–Lindenstrauss).

    Inner products are preserved in expectation (``E[(Pg)·(Ph)] = g·h``), as in TRAK (Park et al.
    2023). The matrix is ``n_params × dim``; for very large models use last-layer gradients.
    """
    check_int("dim", dim, minimum=1)
    n = g.shape[1]
    if n * dim > 2e8:
        raise ValueError(f"a dense projection of {n:,} parameters to {dim} dims is too large; use scope='last_layer'")
    gen = torch.Generator().manual_seed(seed)
    P = torch.randn(n, dim, generator=gen, dtype=g.dtype) / dim**0.5
    return g @ P


def value_features(g_train: torch.Tensor, G_value: torch.Tensor, *, lr: float = 1.0, kind: str = "paper") -> torch.Tensor:
    r"""VTruST features :math:`X_{ji}` of training points (columns) against value components (rows).

    ``s = lr · G_value @ g_trainᵀ`` (shape ``M × B``); ``kind="tracin"`` returns ``s``,
    ``kind="paper"`` returns ``s + s²/2``. See the module docstring for the sign convention.

    >>> import torch
    >>> value_features(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]]), kind="paper")
    tensor([[4.],
            [0.]])
    """
    check_choice("kind", kind, _KINDS)
    check_positive("lr", lr)
    if g_train.shape[1] != G_value.shape[1]:
        raise ValueError(f"g_train and G_value must have the same number of parameters; got {g_train.shape[1]} and {G_value.shape[1]}")
    s = lr * (G_value @ g_train.T)
    return s if kind == "tracin" else s + 0.5 * s * s


def normalise_columns(X: torch.Tensor, *, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each column to unit ℓ2 norm; returns ``(X_unit, norms)``; zero columns stay zero."""
    norms = X.norm(dim=0)
    return X / torch.where(norms > eps, norms, torch.ones_like(norms)), norms


def sample_grads(model, x, y, *, scope: str = "last_layer", projection: int | None = None, seed: int = 0,
                 return_logits: bool = False):
    """Per-sample gradients, optionally projected to ``projection`` dimensions (same matrix for a seed).

    Training points and value components must use the same ``scope``, ``projection`` and ``seed``
    so that their inner products approximate the true ones. ``return_logits``: also the logits, as
    :func:`per_sample_grads` gives them.
    """
    out = per_sample_grads(model, x, y, scope=scope, return_logits=return_logits)
    g, logits = out if return_logits else (out, None)
    g = g if projection is None else random_projection(g, projection, seed=seed)
    return (g, logits) if return_logits else g


def label_values(model, x, w: torch.Tensor, *, n_classes: int, scope: str = "last_layer", projection: int | None = None,
                 seed: int = 0) -> torch.Tensor:
    """``v[i, c] = g_i(c)·w``: each point's first-order value against the direction ``w`` were its label ``c``.

    ``g_i(c)`` is the per-sample gradient (as :func:`sample_grads` gives it, with the same
    ``scope``, ``projection`` and ``seed``) of the cross-entropy of ``x_i`` with label ``c``. With
    ``w = η ∇V`` for a value loss ``V``, ``v[i, c]`` is the decrease of ``V`` that one SGD step on
    ``(x_i, c)`` would cause. For a linear last layer the ``n_classes`` values come in closed form
    from one forward pass: ``g_i(c) = (p_i − e_c) ⊗ [h_i, 1]``, so ``v[i, c] = p_i·u_i − u_{ic}``
    with ``u_i = W [h_i, 1]`` (``w`` reshaped to the head's weight and bias); otherwise one
    gradient pass per class.

    Examples
    --------
    >>> import torch
    >>> from trustkit.models import make_model
    >>> m = make_model("mlp", input_shape=(5,), n_classes=2, seed=0)
    >>> x, y = torch.randn(4, 5), torch.tensor([0, 1, 1, 0])
    >>> w = torch.randn(130, dtype=torch.float64)
    >>> v = label_values(m, x, w, n_classes=2)
    >>> torch.allclose(v[torch.arange(4), y], sample_grads(m, x, y).double() @ w)
    True
    """
    check_choice("scope", scope, _SCOPES)
    head = getattr(model, "head", None)
    if scope == "last_layer" and projection is None and isinstance(head, torch.nn.Linear) and hasattr(model, "features"):
        was = model.training
        model.eval()
        try:
            h = penultimate(model, x)
            with torch.no_grad():
                p = torch.softmax(head(h), dim=1).to(w.dtype)
        finally:
            model.train(was)
        C, H = head.out_features, head.in_features
        u = h.to(w.dtype) @ w[: C * H].reshape(C, H).T
        if head.bias is not None:
            u = u + w[C * H : C * H + C]
        return (p * u).sum(1, keepdim=True) - u
    return torch.stack([sample_grads(model, x, torch.full((len(x),), c, dtype=torch.long), scope=scope,
                                     projection=projection, seed=seed).to(w.dtype) @ w
                        for c in range(n_classes)], dim=1)
