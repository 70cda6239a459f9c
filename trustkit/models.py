"""Models: the VTruST paper's 2-layer MLP for tables, a small CNN and ResNet-18 for images.

Every model is split into ``features`` (input → penultimate representation) and ``head`` (the
last linear layer), because later modules need both: last-layer per-sample gradients and
penultimate-layer distances (VTruST), and feature extraction for explanations. Initialisation
is deterministic from a seed and does not disturb the global random state.
"""

from __future__ import annotations

import torch
from torch import nn

from ._validation import _suggest, check_choice, check_int

__all__ = ["MLP", "SmallCNN", "ResNet18", "MODELS", "make_model", "capped_kwargs", "width_kwargs", "widest_kwargs"]


class _FeatureHead(nn.Module):
    features: nn.Module
    head: nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(_FeatureHead):
    """Two-layer perceptron ``Linear(d, hidden) → ReLU → Linear(hidden, n_classes)``.

    This is the "2-layer neural network" VTruST (Das et al. 2024) uses for all tabular data; the
    paper does not give the width, so ``hidden`` defaults to 64. ``depth`` stacks that many hidden
    layers of width ``hidden`` (default 1).

    >>> import torch
    >>> MLP(in_features=10, n_classes=2)(torch.zeros(3, 10)).shape
    torch.Size([3, 2])
    """

    def __init__(self, *, in_features: int, n_classes: int = 2, hidden: int = 64, dropout: float = 0.0,
                 depth: int = 1):
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("n_classes", n_classes, minimum=2)
        check_int("hidden", hidden, minimum=1)
        check_int("depth", depth, minimum=1, maximum=16)
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, n_classes)


class SmallCNN(_FeatureHead):
    """Two conv blocks (3×3 conv, ReLU, 2×2 max-pool) and a 128-unit hidden layer.

    >>> import torch
    >>> SmallCNN(in_channels=1, n_classes=10)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, *, in_channels: int = 1, n_classes: int = 10, width: int = 16, hidden: int = 128):
        super().__init__()
        check_int("in_channels", in_channels, minimum=1)
        check_int("n_classes", n_classes, minimum=2)
        check_int("width", width, minimum=1)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, n_classes)


class ResNet18(_FeatureHead):
    """torchvision's ResNet-18 with a CIFAR-style stem (3×3 conv, stride 1, no max-pool).

    >>> import torch
    >>> ResNet18(in_channels=3, n_classes=10)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, *, in_channels: int = 3, n_classes: int = 10):
        super().__init__()
        import torchvision

        check_int("in_channels", in_channels, minimum=1)
        check_int("n_classes", n_classes, minimum=2)
        net = torchvision.models.resnet18(weights=None, num_classes=n_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.head = net.fc
        net.fc = nn.Identity()
        self.features = net


MODELS = {"mlp": MLP, "cnn": SmallCNN, "resnet18": ResNet18}


#: the size knob of each family that a parameter cap shrinks, with the knobs that scale with it
_WIDTH = {"mlp": ("hidden", 64, {}), "cnn": ("width", 16, {"hidden": 8})}


def _kwargs(name: str, input_shape: tuple[int, ...], kwargs: dict) -> dict:
    if name == "mlp":
        if len(input_shape) != 1:
            raise ValueError(f"model 'mlp' needs flat inputs (d,); got input shape {input_shape}; use 'cnn' for images")
        return {"in_features": input_shape[0], **kwargs}
    if len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs image inputs (C, H, W); got input shape {input_shape}")
    return {"in_channels": input_shape[0], **kwargs}


def _n_params(name: str, n_classes: int, kwargs: dict) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in MODELS[name](n_classes=n_classes, **kwargs).parameters())


def width_kwargs(name: str, size: int, /, **kwargs) -> dict:
    """The model arguments of family ``name`` with its width knob at ``size``, from the arguments asked.

    ``hidden`` for the MLP; ``width`` for the CNN, whose ``hidden`` layer scales with it in
    proportion (8 units per channel by default). Other arguments (``depth``…) are kept.

    >>> width_kwargs("cnn", 4), width_kwargs("mlp", 8, depth=2)
    ({'width': 4, 'hidden': 32}, {'depth': 2, 'hidden': 8})
    """
    if name not in _WIDTH:
        raise ValueError(f"model {name!r} has a fixed size; a cap needs a family with a width knob: {sorted(_WIDTH)}")
    knob, default, scaled = _WIDTH[name]
    top = check_int(knob, kwargs.get(knob, default), minimum=1)
    check_int("size", size, minimum=1)
    out = {**kwargs, knob: int(size)}
    for k, f in scaled.items():
        out[k] = max(1, round(kwargs.get(k, default * f) * size / top))
    return out


def widest_kwargs(name: str, fits, **kwargs) -> dict | None:
    """The widest arguments (:func:`width_kwargs`, at most the width asked) for which ``fits(kwargs)`` holds.

    ``fits`` must be monotone (true up to some width, false above it): a parameter count, a memory
    estimate. None when not even width 1 fits.

    >>> widest_kwargs("mlp", lambda kw: kw["hidden"] <= 20)
    {'hidden': 20}
    """
    knob, default, _ = _WIDTH.get(name, (None, None, None))
    if knob is None:
        raise ValueError(f"model {name!r} has a fixed size; a cap needs a family with a width knob: {sorted(_WIDTH)}")
    top = check_int(knob, kwargs.get(knob, default), minimum=1)
    if not fits(width_kwargs(name, 1, **kwargs)):
        return None
    lo, hi = 1, top
    while lo < hi:  # binary search on the width
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(width_kwargs(name, mid, **kwargs)) else (lo, mid - 1)
    return width_kwargs(name, lo, **kwargs)


def capped_kwargs(name: str, *, input_shape: tuple[int, ...], n_classes: int, max_params: int, **kwargs) -> dict:
    """The model arguments of the widest model of the family, up to the one asked, within ``max_params``.

    The family's width knob (``hidden`` for the MLP; ``width`` for the CNN, whose ``hidden`` layer
    scales with it, 8 units per channel) is lowered until the parameter count fits; the depth is
    kept (``depth=`` for the MLP). A cap that not even width 1 fits raises a ValueError naming the
    smallest size the family reaches.

    >>> capped_kwargs("mlp", input_shape=(100,), n_classes=2, max_params=2000)
    {'hidden': 19}
    """
    check_choice("model", name, MODELS)
    check_int("max_params", max_params, minimum=1)
    shape = tuple(input_shape)

    def n(kw: dict) -> int:
        return _n_params(name, n_classes, _kwargs(name, shape, kw))

    out = widest_kwargs(name, lambda kw: n(kw) <= max_params, **kwargs)
    if out is None:
        knob = _WIDTH[name][0]
        raise ValueError(f"max_params={max_params:,} is below the smallest {name!r} for this task ({knob}=1: "
                         f"{n(width_kwargs(name, 1, **kwargs)):,} parameters); raise the cap or choose a smaller family")
    return out


def make_model(name: str, *, input_shape: tuple[int, ...], n_classes: int, seed: int = 0,
               max_params: int | None = None, **kwargs) -> nn.Module:
    """Build a model by name (``"mlp"``, ``"cnn"``, ``"resnet18"``) with weights drawn from ``seed``.

    ``max_params`` caps the size: the width is lowered to the largest that fits (see
    :func:`capped_kwargs`). The global torch random state is left untouched.

    Examples
    --------
    >>> import torch
    >>> a = make_model("mlp", input_shape=(5,), n_classes=2, seed=3)
    >>> b = make_model("mlp", input_shape=(5,), n_classes=2, seed=3)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    >>> sum(p.numel() for p in make_model("mlp", input_shape=(100,), n_classes=2, max_params=5000).parameters()) <= 5000
    True
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {sorted(MODELS)}.{_suggest(name, MODELS)}")
    check_int("seed", seed, minimum=0)
    input_shape = tuple(input_shape)
    if max_params is not None:
        kwargs = capped_kwargs(name, input_shape=input_shape, n_classes=n_classes, max_params=max_params, **kwargs)
    kwargs = _kwargs(name, input_shape, kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](n_classes=n_classes, **kwargs)
