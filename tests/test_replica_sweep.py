"""Sweep cells that differ only in their seed trained as one replica job: the same records, one per cell."""

import numpy as np
import pytest

from trustkit.experiments import ResultStore, RunFailed, expand_grid, run_grid, run_key, run_sweep
from trustkit.experiments._replica_sweep import replica_key
from trustkit.experiments._sweep import reference_of

GRID = {"datasets": ["compas"], "models": [{"family": "mlp", "hidden": 8}],
        "constraints": {"epochs": [0.5], "prune_structured": [0.5], "time": [0.5]},
        "mitigations": ["erm", "fair_penalty", "pgd_at"], "seeds": [0, 1, 2],
        "training": {"epochs": 3, "finetune_steps": 5, "fair_lambdas": [0.3, 3.0]},
        "evaluation": {"max_attack": 100, "pgd_steps": 2, "latency": False}}


# -- grouped runs in run_grid -----------------------------------------------------------------
def _one(c):
    if c["x"] == 13:
        raise ValueError("thirteen is refused")
    return {"y": c["x"] ** 2, "group": 1}


def _many(cs):
    if any(c["x"] == 13 for c in cs):
        raise ValueError("thirteen is refused")
    return [{"y": c["x"] ** 2, "group": len(cs)} for c in cs]


def _parity(c):
    return None if c["x"] < 0 else c["x"] % 2


@pytest.mark.parametrize("executor", ["sequential", "processes"])
def test_grouped_configs_run_together_and_are_stored_one_by_one(tmp_path, executor):
    configs = [{"x": x} for x in (-1, 0, 1, 2, 3, 4, 6)]
    store = ResultStore(tmp_path)
    df = run_grid(configs, _one, store=store, progress=False, group_by=_parity, run_group=_many, max_group=3,
                  executor=executor, workers=2 if executor != "sequential" else None)
    assert df["x"].tolist() == [-1, 0, 1, 2, 3, 4, 6] and df["y"].tolist() == [1, 0, 1, 4, 9, 16, 36]
    # -1 alone; the evens 0, 2, 4, 6 in groups of at most 3 (then a lone 6); the odds 1, 3 together
    assert df["group"].tolist() == [1, 3, 2, 3, 2, 3, 1]
    assert len(store) == 7 and store.get({"x": 4})["y"] == 16


def test_a_failed_group_fails_each_of_its_configs_and_the_rest_is_kept(tmp_path):
    store = ResultStore(tmp_path)
    configs = [{"x": 11}, {"x": 13}, {"x": 2}]
    df = run_grid(configs, _one, store=store, progress=False, group_by=_parity, run_group=_many, on_error="record")
    assert df["x"].tolist() == [2] and len(store) == 1
    assert sorted(store.failures()["x"]) == [11, 13]
    with pytest.raises(ValueError, match="group_by and run_group go together"):
        run_grid(configs, _one, group_by=_parity)
    with pytest.raises(RunFailed, match="thirteen"):
        run_grid(configs, _one, group_by=_parity, run_group=_many, progress=False, executor="processes", workers=2)


# -- which sweep cells share a job ------------------------------------------------------------
def test_the_replica_key_groups_seeds_and_leaves_clocks_schedulers_and_attacks_alone():
    cells = expand_grid(GRID)
    timed = frozenset(run_key(reference_of(c)) for c in cells if c["constraint"] == "time")
    key = {(c["mitigation"], c["constraint"], c["seed"]): replica_key(c, timed_refs=timed) for c in cells}
    assert key[("erm", "epochs", 0)] == key[("erm", "epochs", 2)] is not None  # seeds share
    assert key[("erm", "epochs", 0)] != key[("fair_penalty", "epochs", 0)]  # settings do not
    assert key[("erm", "time", 0)] is None  # a budget is a clock
    assert key[("erm", "none", 0)] is None  # this reference's time sets the time level
    assert replica_key(next(c for c in cells if c["mitigation"] == "erm" and c["constraint"] == "none")) is not None
    assert key[("pgd_at", "epochs", 0)] == key[("pgd_at", "epochs", 1)] is not None  # each its own attack
    atats = expand_grid({**GRID, "mitigations": ["atats_pid"], "constraints": {"epochs": [0.5]}})
    assert all(replica_key(c) is None for c in atats)  # a scheduler decides per run


# -- a whole sweep ------------------------------------------------------------------------------
def test_a_replica_sweep_writes_what_the_sequential_sweep_writes(tmp_path):
    grid = {**GRID, "seeds": [0, 1, 2, 3],
            "exclude": [{"mitigation": "fair_penalty", "constraint": "time"}, {"mitigation": "pgd_at", "constraint": "time"}]}
    alone = run_sweep(grid, store=tmp_path / "alone", progress=False, on_error="raise")
    together = run_sweep(grid, store=tmp_path / "together", progress=False, on_error="raise", replicas=True)
    assert len(together) == len(alone) == len(expand_grid(grid)) == len(ResultStore(tmp_path / "together"))
    a, t = (d.set_index(["mitigation", "constraint", "level", "seed"]).sort_index() for d in (alone, together))
    shared = t["replicas"] > 1
    # batched: the epochs and pruning cells and the fair_penalty references (4 seeds × 2 λ in one job)
    assert set(t.index[shared].get_level_values("constraint")) == {"epochs", "prune_structured", "none"}
    assert (t.loc[("fair_penalty", "none"), "replicas"] == 8).all()
    assert (t.loc[("erm", "none"), "replicas"] == 1).all() and (t.loc[("erm", "time"), "replicas"] == 1).all()
    assert (t.loc[("pgd_at", "epochs"), "replicas"] == 4).all()
    untimed = t.index.get_level_values("constraint") != "time"
    assert t.loc[untimed, "trained"].all()
    # the same λ picked on validation, and the same test numbers within rounding (not the clock-bound cells)
    assert t.loc[("fair_penalty", "none"), "fair_lambda"].tolist() == a.loc[("fair_penalty", "none"), "fair_lambda"].tolist()
    for col in ("accuracy", "eo_gap", "dp_gap", "robust_accuracy", "params_after"):
        np.testing.assert_allclose(t.loc[untimed, col].to_numpy(float), a.loc[untimed, col].to_numpy(float),
                                   atol=0.01, err_msg=col)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "together").glob("*.json")}
    run_sweep(grid, store=tmp_path / "together", progress=False, replicas=True)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "together").glob("*.json")} == stamps  # resumed: nothing re-ran
    with pytest.raises(TypeError, match="replicas must be True or False"):
        run_sweep(grid, store=tmp_path / "x", replicas="yes")


def test_seeds_whose_tables_have_other_columns_train_apart_from_the_others():
    from trustkit.data import load_task
    from trustkit.experiments._replica_sweep import sweep_group

    # Adult's seed 3 training split lacks a category the others have: 84 one-hot columns, not 85
    assert load_task("adult", seed=3).input_shape != load_task("adult", seed=0).input_shape
    grid = {**GRID, "datasets": ["adult"], "constraints": {"epochs": [0.5]}, "mitigations": ["erm"], "seeds": [0, 1, 3],
            "training": {"epochs": 2}, "evaluation": {"max_attack": 50, "pgd_steps": 1, "latency": False}}
    cells = [c for c in expand_grid(grid) if c["constraint"] == "epochs"]
    assert len({replica_key(c) for c in cells}) == 1  # the grid cannot know: the group finds out
    out = sweep_group(cells, derived={})
    assert [o["replicas"] for o in out] == [2, 2, 1] and all(o["trained"] for o in out)
