"""The plain loop the Trainer and the selectors are measured against."""

from __future__ import annotations

import torch

from ..data import Task
from ..models import make_model

__all__ = ["plain_loop"]


def plain_loop(task: Task, *, model: str = "mlp", epochs: int = 10, batch_size: int = 128, lr: float = 3e-3,
               seed: int = 0, validate=None) -> torch.nn.Module:
    """Train ``model`` on ``task.train`` the way a person writes it by hand: Adam, cross-entropy,
    a new shuffle each epoch, no meter, no budget, no callbacks; ``validate(model)`` after each
    epoch if given. Returns the model.

    Benchmarks divide the Trainer's time, and selection times (``select_x``), by this loop's.

    >>> from trustkit.data import load_german
    >>> m = plain_loop(load_german(seed=0), epochs=1)
    >>> type(m).__name__
    'MLP'
    """
    torch.manual_seed(seed)
    net = make_model(model, input_shape=task.input_shape, n_classes=task.n_classes, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    X, y = torch.as_tensor(task.train.X), torch.as_tensor(task.train.y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
        if validate is not None:
            net.eval()
            validate(net)
    return net
