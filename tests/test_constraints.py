"""The constraint registry: built-in constraints and one registered from outside."""

import pytest
import torch

from trustkit.experiments import describe_setting, expand_grid, run_sweep
from trustkit.experiments.constraints import CONSTRAINT_REGISTRY, CONSTRAINTS, Constraint, get_constraint, register_constraint

GRID = {"datasets": ["compas"], "models": [{"family": "mlp", "hidden": 8}], "mitigations": ["erm"], "seeds": [0],
        "training": {"epochs": 3, "finetune_steps": 5}, "evaluation": {"max_attack": 100, "pgd_steps": 2, "latency": False}}


@pytest.fixture
def registered():
    """Register test constraints from outside the package; remove them afterwards."""
    added = []

    def add(cls):
        register_constraint(cls)
        added.append(cls.name)
        return cls

    yield add
    for name in added:
        CONSTRAINT_REGISTRY.pop(name)
        CONSTRAINTS.pop(name)


def test_a_constraint_registered_from_outside_runs_in_a_grid(registered, tmp_path):
    @registered
    class OneEpochHalfHead(Constraint):
        """Trains one epoch, then halves the output layer (a planted change to the trained model)."""

        name = "one_epoch"
        description = "one epoch of training, then the head's weights halved"
        template = "one epoch at level {l:.0%}"
        acts_after = True

        def before(self, level, plan, *, cell, task, ref):
            plan.epochs = 1
            plan.record["planted"] = level

        def after(self, level, model, *, cell, task, terms, weights, callbacks):
            from trustkit.compress._finetune import _as_compressed

            with torch.no_grad():
                model.head.weight.mul_(0.5)
            return _as_compressed(model)

    df = run_sweep({**GRID, "constraints": {"one_epoch": [0.5]}}, store=tmp_path / "s", progress=False)
    ref, cur = df[df.constraint == "none"].iloc[0], df[df.constraint == "one_epoch"].iloc[0]
    assert (ref.epochs_done, cur.epochs_done) == (3, 1) and cur.planted == 0.5
    assert describe_setting("one_epoch", 0.5) == "one epoch at level 50%"
    with pytest.raises(ValueError, match=r"one_epoch: a level is a fraction of the reference in \(0, 1\]"):
        expand_grid({**GRID, "constraints": {"one_epoch": [2.0]}})


def test_registration_refuses_what_it_cannot_take(registered):
    class Nameless(Constraint):
        pass

    with pytest.raises(ValueError, match="must be an identifier"):
        register_constraint(Nameless)
    with pytest.raises(TypeError, match="subclass of trustkit.experiments.constraints.Constraint"):
        register_constraint(dict)

    class Again(Constraint):
        name = "quantize"

    with pytest.raises(ValueError, match="'quantize' is already registered"):
        register_constraint(Again)
    with pytest.raises(ValueError, match="unknown constraint type 'quantise'.*Did you mean 'quantize'"):
        get_constraint("quantise")


def test_built_in_constraints_describe_their_settings():
    assert describe_setting("prune_structured", 0.8) == "pruning 80% of the neurons (structured)"
    assert describe_setting("quantize", "int8") == "quantising to int8"
    assert describe_setting("time", "0.25") == "cutting training time to 25% of the reference"
    assert describe_setting("none", 1.0) == "the unconstrained reference"
    assert set(CONSTRAINTS) >= {"none", "time", "epochs", "memory", "params", "prune_unstructured", "prune_structured",
                                "quantize", "distill"}
