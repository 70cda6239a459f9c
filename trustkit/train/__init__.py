"""Training: one loop (:class:`Trainer`) with a loss composed of terms, callbacks, and budgets.

>>> from trustkit.train import Trainer, CrossEntropy
>>> Trainer(terms=[CrossEntropy()], epochs=2, progress=False).weights
{'ce': 1.0}
"""

from ._terms import Batch, CrossEntropy, LossTerm
from ._trainer import OPTIMIZERS, Callback, EpochRecord, RunRecord, Trainer, TrainState

__all__ = ["Trainer", "Callback", "TrainState", "EpochRecord", "RunRecord", "OPTIMIZERS",
           "Batch", "LossTerm", "CrossEntropy"]
