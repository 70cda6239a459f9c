"""Models: the VTruST paper's 2-layer MLP for tables, a small CNN and ResNet-18 for images.

Every model is split into ``features`` (input → penultimate representation) and ``head`` (the
last linear layer), because later modules need both: last-layer per-sample gradients and
penultimate-layer distances (VTruST), and feature extraction for explanations. Initialisation
is deterministic from a seed and does not disturb the global random state.
"""

from __future__ import annotations

import torch
from torch import nn

from ._validation import _suggest, check_int

__all__ = ["MLP", "SmallCNN", "ResNet18", "MODELS", "make_model"]


class _FeatureHead(nn.Module):
    features: nn.Module
    head: nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(_FeatureHead):
    """Two-layer perceptron ``Linear(d, hidden) → ReLU → Linear(hidden, n_classes)``.

    This is the "2-layer neural network" VTruST (Das et al. 2024) uses for all tabular data; the
    paper does not give the width, so ``hidden`` defaults to 64.

    >>> import torch
    >>> MLP(in_features=10, n_classes=2)(torch.zeros(3, 10)).shape
    torch.Size([3, 2])
    """

    def __init__(self, *, in_features: int, n_classes: int = 2, hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("n_classes", n_classes, minimum=2)
        check_int("hidden", hidden, minimum=1)
        layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
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


def make_model(name: str, *, input_shape: tuple[int, ...], n_classes: int, seed: int = 0, **kwargs) -> nn.Module:
    """Build a model by name (``"mlp"``, ``"cnn"``, ``"resnet18"``) with weights drawn from ``seed``.

    The global torch random state is left untouched.

    Examples
    --------
    >>> import torch
    >>> a = make_model("mlp", input_shape=(5,), n_classes=2, seed=3)
    >>> b = make_model("mlp", input_shape=(5,), n_classes=2, seed=3)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {sorted(MODELS)}.{_suggest(name, MODELS)}")
    check_int("seed", seed, minimum=0)
    input_shape = tuple(input_shape)
    if name == "mlp":
        if len(input_shape) != 1:
            raise ValueError(f"model 'mlp' needs flat inputs (d,); got input shape {input_shape}; use 'cnn' for images")
        kwargs = {"in_features": input_shape[0], **kwargs}
    else:
        if len(input_shape) != 3:
            raise ValueError(f"model {name!r} needs image inputs (C, H, W); got input shape {input_shape}")
        kwargs = {"in_channels": input_shape[0], **kwargs}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](n_classes=n_classes, **kwargs)
