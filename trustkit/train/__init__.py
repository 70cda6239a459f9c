"""Training: one loop (:class:`Trainer`) with a loss composed of terms, callbacks, schedulers and budgets.

The loss is EfficientTrust's ``L_acc + λ_f·R_fair + λ_r·R_rob`` (:class:`CrossEntropy`,
:class:`FairnessPenalty`, :class:`AdversarialLoss`); a :class:`Scheduler` decides each epoch
the λ values and where the next slice of compute goes.

>>> from trustkit.train import Trainer, CrossEntropy
>>> Trainer(terms=[CrossEntropy()], epochs=2, progress=False).weights
{'ce': 1.0}
"""

from ._atats import STATE_FEATURES, BanditAction, BanditPolicy, PIDPolicy, RulePolicy, atats_state
from ._registry import SCHEDULERS, make_scheduler
from ._schedulers import (
    FAIRNESS_METRICS,
    Action,
    Allocation,
    CausalScheduler,
    DualAscent,
    DynamicLambda,
    FairBatch,
    OracleScheduler,
    PeriodicFairness,
    Scheduler,
    StaticLambda,
    default_allocations,
)
from ._reference import plain_loop
from ._replicas import REPLICA_TERMS, ReplicaTrainer
from ._surrogates import cell_loss_gap, soft_dp_gap, soft_eo_gap
from ._terms import ATTACKS, FAIRNESS_SURROGATES, AdversarialLoss, Batch, CrossEntropy, FairnessPenalty, LossTerm
from ._records import Callback, EpochRecord, RunRecord, TrainState
from ._trainer import OPTIMIZERS, Trainer
from ._validation import RobustEval

__all__ = [
    "Trainer", "Callback", "TrainState", "EpochRecord", "RunRecord", "RobustEval", "OPTIMIZERS",
    "Batch", "LossTerm", "CrossEntropy", "FairnessPenalty", "AdversarialLoss", "FAIRNESS_SURROGATES", "ATTACKS",
    "soft_dp_gap", "soft_eo_gap", "cell_loss_gap",
    "Action", "Scheduler", "StaticLambda", "PeriodicFairness", "DynamicLambda", "Allocation", "default_allocations",
    "CausalScheduler", "OracleScheduler", "FairBatch", "DualAscent", "FAIRNESS_METRICS",
    "RulePolicy", "PIDPolicy", "BanditPolicy", "BanditAction", "atats_state", "STATE_FEATURES",
    "SCHEDULERS", "make_scheduler", "plain_loop", "ReplicaTrainer", "REPLICA_TERMS",
]
