import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trustkit.experiments import (
    ResultStore, RunFailed, expand_grid, load_grid, run_grid, run_key, run_sweep, sweep_status, worker_threads,
)
from trustkit.experiments._sweep import reference_of

ROOT = Path(__file__).resolve().parents[1]

TINY = {"datasets": ["compas"], "models": [{"family": "mlp", "hidden": 8}],
        "constraints": {"time": [0.5], "prune_structured": [0.5], "quantize": ["int8"], "params": [0.5]},
        "mitigations": ["erm"], "seeds": [0],
        "training": {"epochs": 2, "finetune_steps": 5}, "evaluation": {"max_attack": 100, "pgd_steps": 2, "latency": False}}


# -- the grid ---------------------------------------------------------------------------------
def test_a_grid_expands_factorially_with_the_references_first():
    g = {"datasets": ["compas", "adult"], "models": [{"family": "mlp", "hidden": 8}, {"family": "mlp", "hidden": 16}],
         "constraints": {"time": [0.5, 0.1], "quantize": ["int8"]}, "mitigations": ["erm", "pgd_at"], "seeds": [0, 1, 2]}
    cells = expand_grid(g)
    assert len(cells) == 2 * 2 * (1 + 3) * 2 * 3
    n_ref = 2 * 2 * 2 * 3
    assert all(c["constraint"] == "none" for c in cells[:n_ref]) and all(c["constraint"] != "none" for c in cells[n_ref:])
    assert len({run_key(c) for c in cells}) == len(cells)  # every cell is its own record
    for c in cells[n_ref:]:
        assert reference_of(c) in cells[:n_ref]
    assert {c["model"] for c in cells} == {"mlp[hidden=8]", "mlp[hidden=16]"}


def test_exclude_drops_cells_and_a_grid_of_nothing_is_refused():
    g = {**TINY, "exclude": [{"constraint": "quantize"}]}
    assert {c["constraint"] for c in expand_grid(g)} == {"none", "time", "prune_structured", "params"}
    with pytest.raises(ValueError, match="zero cells"):
        expand_grid({**TINY, "exclude": [{"dataset": "compas"}]})


@pytest.mark.parametrize("change,match", [
    ({"dataset": ["compas"]}, "unknown grid key"),
    ({"datasets": ["compass"]}, "unknown dataset 'compass'"),
    ({"models": [{"family": "transformer"}]}, "unknown model family"),
    ({"models": [{"family": "mlp", "widht": 3}]}, "widht"),
    ({"constraints": {"prune": [0.5]}}, "unknown constraint type 'prune'"),
    ({"constraints": {"prune_structured": [1.0]}}, r"sparsity level must be in \[0, 1\)"),
    ({"constraints": {"time": [0.0]}}, r"fraction of the reference in \(0, 1\]"),
    ({"constraints": {"time": [1.5]}}, r"fraction of the reference in \(0, 1\]"),
    ({"constraints": {"quantize": ["int2"]}}, "unknown level 'int2'"),
    ({"constraints": {"epochs": []}}, "non-empty list"),
    ({"mitigations": ["dro"]}, "unknown mitigation 'dro'"),
    ({"seeds": [-1]}, "seeds must be integers"),
    ({"seeds": []}, "zero cells"),
    ({"training": {"epoch": 3}}, "unknown training setting"),
    ({"models": [{"family": "cnn"}]}, "does not fit the tabular dataset"),
    ({"mitigations": ["expgrad"]}, "cannot take constraint"),
    ({"seeds": [0, 0, 1]}, "'seeds' lists 0 twice"),
    ({"datasets": ["compas", "compas"]}, "'datasets' lists 'compas' twice"),
    ({"mitigations": ["erm", "erm"]}, "'mitigations' lists 'erm' twice"),
    ({"models": [{"family": "mlp", "hidden": 8}, {"family": "mlp", "hidden": 8}]}, "'models' lists"),
    ({"constraints": {"time": [0.5, 0.5]}}, r"'constraints.time' lists 0.5 twice"),
    ({"training": {"epochs": 0}}, r"training.epochs: must be >= 1; got 0"),
    ({"training": {"epochs": 2.5}}, r"training.epochs: must be an integer"),
    ({"training": {"lr": -0.01}}, r"training.lr: must be > 0"),
    ({"training": {"lr": "fast"}}, r"training.lr: must be a finite number"),
    ({"training": {"batch_size": 0}}, r"training.batch_size: must be >= 1"),
    ({"training": {"fair_lambdas": [1.0, -1.0]}}, r"training.fair_lambdas: must be >= 0"),
    ({"training": {"fair_lambdas": [1.0, 1.0]}}, r"'training.fair_lambdas' lists 1.0 twice"),
    ({"training": {"pgd_eps": -0.1}}, r"training.pgd_eps: must be > 0"),
    ({"evaluation": {"eps": 0}}, r"evaluation.eps: must be > 0"),
    ({"evaluation": {"pgd_steps": 0}}, r"evaluation.pgd_steps: must be >= 1"),
    ({"evaluation": {"latency": "yes"}}, r"evaluation.latency: must be true or false"),
    ({"datasets": [{"csv": "no/such/file.csv", "label": "y", "sensitive": "g"}]}, "does not exist"),
    ({"datasets": [{"csv": "x.csv", "label": "y"}]}, "needs 'sensitive'"),
])
def test_bad_grids_are_refused_before_anything_runs(change, match):
    with pytest.raises(ValueError, match=match):
        expand_grid({**TINY, **change})


def test_a_fairness_mitigation_on_a_task_without_groups_is_refused():
    g = {"datasets": ["digits"], "models": [{"family": "cnn", "width": 4}], "mitigations": ["fair_penalty"], "seeds": [0]}
    for mit in ("fair_penalty", "threshold", "atats_pid", "efficienttrust"):
        with pytest.raises(ValueError, match=f"mitigation '{mit}' needs a sensitive attribute"):
            expand_grid({**g, "mitigations": [mit]})
    assert len(expand_grid({**g, "mitigations": ["erm", "pgd_at"]})) == 2


def test_grid_files_load_and_broken_ones_say_so(tmp_path):
    assert len(expand_grid(ROOT / "grids" / "quick.yaml")) == 128  # 4 settings x 4 mitigations x 8 seeds
    assert len(expand_grid(ROOT / "grids" / "medium.yaml")) == 1440  # 864 of ERM and two training mitigations, 288 threshold cells, 288 scheduler cells on COMPAS
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [compas\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_grid(bad)
    bad.write_text("- compas\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_grid(bad)
    with pytest.raises(FileNotFoundError):
        load_grid(tmp_path / "missing.yaml")


# -- running ----------------------------------------------------------------------------------
def test_a_tiny_sweep_measures_each_constraint_and_resumes_without_rerunning(tmp_path):
    grid = {**TINY, "training": {"epochs": 8, "finetune_steps": 5}}
    df = run_sweep(grid, store=tmp_path, progress=False)
    assert len(df) == 5 and set(df["constraint"]) == {"none", "time", "prune_structured", "quantize", "params"}
    for col in ("accuracy", "dp_gap", "eo_gap", "ece", "robust_accuracy", "train_time_s", "peak_memory_mb", "params_after",
                "gflops", "bytes_after", "threads"):
        assert col in df and df[col].notna().all(), col
    by = df.set_index("constraint")
    ref = by.loc["none"]
    # the time level is a fraction of the reference's measured training time, and the run keeps it
    assert by.loc["time", "train_time_s"] <= 0.5 * ref["train_time_s"] * 1.05 + 0.02
    assert by.loc["time", "stopped_by"] == "time_s" and by.loc["time", "epochs_done"] < 8
    assert by.loc["prune_structured", "params_after"] < ref["params_after"]
    assert by.loc["params", "params_after"] <= 0.5 * ref["params_after"]
    assert by.loc["quantize", "attack"] == "transfer" and by.loc["none", "attack"] == "white-box"
    assert sweep_status(tmp_path) == {"store": str(tmp_path), "done": 5, "total": 5, "failed": 0, "remaining": 0}
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    again = run_sweep(grid, store=tmp_path, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")} == stamps  # nothing re-ran
    assert again["accuracy"].tolist() == df["accuracy"].tolist()


def _square(c):
    import torch

    if c["x"] == 3:
        raise ValueError("three is refused")
    return {"y": c["x"] ** 2, "threads": torch.get_num_threads()}


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_parallel_executors_give_the_sequential_results_with_one_thread_per_worker(tmp_path, executor):
    configs = [{"x": i} for i in range(6)]
    seq = run_grid(configs, _square, store=ResultStore(tmp_path / "seq"), progress=False, on_error="record")
    par_store = ResultStore(tmp_path / executor)
    par = run_grid(configs, _square, store=par_store, progress=False, executor=executor, workers=2,
                   on_error="record")
    assert par["y"].tolist() == seq["y"].tolist() == [0, 1, 4, 16, 25]
    assert set(par["threads"]) == {worker_threads(2)}
    fails = par_store.failures()
    assert fails["x"].tolist() == [3] and "three is refused" in fails["error"].iloc[0]
    with pytest.raises(RunFailed, match="three is refused"):
        run_grid(configs, _square, progress=False, executor=executor, workers=2)


def test_a_failure_is_recorded_then_cleared_when_the_config_succeeds(tmp_path):
    store = ResultStore(tmp_path)
    run_grid([{"x": 3}], _square, store=store, progress=False, on_error="record")
    assert len(store) == 0 and len(store.failures()) == 1
    with pytest.raises(ValueError, match="three"):  # sequentially, the run's own exception
        run_grid([{"x": 3}], _square, store=store, progress=False)
    run_grid([{"x": 3}], lambda c: {"y": 9}, store=store, progress=False)
    assert len(store) == 1 and len(store.failures()) == 0


def test_executor_arguments_are_checked():
    with pytest.raises(ValueError, match="executor"):
        run_grid([{"x": 1}], _square, executor="threads")
    with pytest.raises(ValueError, match="workers"):
        run_grid([{"x": 1}], _square, executor="processes", workers=0)
    with pytest.raises(TypeError, match="scheduler_address"):
        run_grid([{"x": 1}], _square, scheduler_address=8786)


KILL_GRID = {**TINY, "constraints": {"prune_structured": [0.5]}, "seeds": list(range(8)),
             "training": {"epochs": 3, "finetune_steps": 5}}


@pytest.mark.parametrize("replicas", [False, True], ids=["alone", "replicas"])
def test_a_sweep_killed_with_sigkill_resumes_with_nothing_lost_or_duplicated(tmp_path, replicas):
    grid = tmp_path / "grid.yaml"
    import yaml

    grid.write_text(yaml.safe_dump(KILL_GRID))
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trustkit.cli", "sweep", str(grid), "--store", str(store),
                             "--threads", "1"] + (["--replicas"] if replicas else []),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(list(store.glob("*.json"))) < 3:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = {p.name: p.read_bytes() for p in store.glob("*.json")}
    total = len(expand_grid(KILL_GRID))
    assert 3 <= len(before) < total, "the sweep should have been killed mid-way"
    df = run_sweep(grid, store=store, progress=False, replicas=replicas)
    after = {p.name: p.read_bytes() for p in store.glob("*.json")}
    assert len(df) == total == len(after)  # none lost, none duplicated
    assert all(after[k] == v for k, v in before.items())  # finished records were kept, not re-run
    assert len({(r["constraint"], r["seed"]) for r in df.to_dict("records")}) == total
    # at most the one temporary file the kill interrupted (never read as a record; removed once stale)
    assert len(list(store.glob(".*.part"))) <= 1 and np.isfinite(df["accuracy"]).all()


def test_sweep_command_line_status_and_refusals(tmp_path, capsys):
    from trustkit.cli import main

    run_grid([{"x": 1}], _square, store=ResultStore(tmp_path), progress=False)
    assert main(["sweep", "--status", str(tmp_path)]) == 0
    assert "1 / ? done, 0 failed" in capsys.readouterr().out
    assert main(["sweep", str(ROOT / "grids" / "quick.yaml"), "--workers", "2", "--scheduler-address", "tcp://x:1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["sweep", "--status", str(tmp_path / "nothing")]) == 2
    bad = tmp_path / "g.yaml"
    bad.write_text(json.dumps({**TINY, "mitigations": ["dro"]}))
    assert main(["sweep", str(bad), "--store", str(tmp_path / "s")]) == 2
    assert "unknown mitigation 'dro'" in capsys.readouterr().err


def _planted_effects_frame(seeds=5):
    rng = np.random.default_rng(0)
    rows = []
    for s in range(seeds):
        base = 0.20 + rng.normal(0, 0.01)
        rows.append({"dataset": "compas", "model": "mlp", "mitigation": "erm", "seed": s, "constraint": "none",
                     "level": 1.0, "eo_gap": base})
        rows.append({"dataset": "compas", "model": "mlp", "mitigation": "erm", "seed": s, "constraint": "prune_structured",
                     "level": 0.9, "eo_gap": base + 0.05 + rng.normal(0, 0.005)})  # a planted widening
        rows.append({"dataset": "compas", "model": "mlp", "mitigation": "erm", "seed": s, "constraint": "quantize",
                     "level": "int8", "eo_gap": base + rng.normal(0, 0.01)})  # nothing planted
    import pandas as pd

    return pd.DataFrame(rows)


def test_findings_report_a_planted_effect_and_show_no_change_by_equivalence():
    from trustkit.experiments import sweep_effects, sweep_findings

    eff = sweep_effects(_planted_effects_frame(), metrics=["eo_gap"]).set_index("constraint")
    assert eff.loc["prune_structured", "diff"] == pytest.approx(0.05, abs=0.006)
    assert eff.loc["prune_structured", "q_value"] < 1e-3 and eff.loc["quantize", "q_value"] > 0.05
    assert eff.loc["prune_structured", "lo"] > 0 > eff.loc["quantize", "lo"]
    assert eff.loc["prune_structured", "verdict"] == "changed"
    # 5 seeds with a per-seed spread of 0.01: the equivalence test puts quantisation within ±0.02
    assert eff.loc["quantize", "verdict"] == "no change" and eff.loc["quantize", "q_equiv"] < 0.05
    lines = sweep_findings(sweep_effects(_planted_effects_frame(), metrics=["eo_gap"]), metric="eo_gap")
    assert lines[0].startswith("Pruning 90% of the neurons (structured) changed the EO gap on compas (mlp, erm) by +0.04")
    assert "5 seeds" in lines[0] and "q = " in lines[0]
    assert any(line.startswith("Within ±0.02 of the reference (the EO gap; equivalence tests") and "quantising to int8" in line
               for line in lines)
    assert lines[-1] == "Tests: Benjamini–Hochberg over 2 tests of constraint effects (the EO gap), q < 0.05."
    few = sweep_findings(sweep_effects(_planted_effects_frame(seeds=2), metrics=["eo_gap"]), metric="eo_gap")
    assert any(line.startswith("Not tested for the EO gap in 2 cell(s): 2 seed(s)") for line in few)
    assert not any("changed the EO gap" in line for line in few)


def test_a_memory_cap_keeps_the_width_and_shrinks_the_batch_first(compas_task):
    from trustkit.budget import training_memory_mb
    from trustkit.experiments._sweep import _memory_fit
    from trustkit.models import make_model

    def est(hidden, batch):
        m = make_model("mlp", input_shape=compas_task.input_shape, n_classes=2, hidden=hidden)
        return training_memory_mb(m, compas_task.input_shape, batch_size=batch)

    full = est(128, 256)
    for level in (0.5, 0.25, 0.1):
        kw, batch = _memory_fit("mlp", {"hidden": 128}, compas_task, level * full, 256)
        assert est(kw["hidden"], batch) <= level * full  # it fits
        assert batch < 256  # the batch went first
        if kw["hidden"] < 128:  # narrower only when even a batch of 32 did not fit at full width
            assert batch == 32 and est(kw["hidden"] + 1, 32) > level * full
    with pytest.raises(ValueError, match="below the smallest mlp"):
        _memory_fit("mlp", {"hidden": 128}, compas_task, 1e-4, 256)


def test_a_gap_closed_by_collapsing_to_one_class_is_named_as_such():
    from trustkit.experiments import sweep_effects, sweep_findings

    rng = np.random.default_rng(1)
    df = _planted_effects_frame()
    df["accuracy"] = 0.8 + rng.normal(0, 0.005, len(df))
    df["positive_rate"] = 0.45 + rng.normal(0, 0.01, len(df))
    narrowed = df["constraint"] == "prune_structured"
    df.loc[narrowed, "eo_gap"] = df.loc[narrowed, "eo_gap"] - 0.15  # the gap closes...
    df.loc[narrowed, "accuracy"] = 0.55 + 0.001 * df.loc[narrowed, "seed"]  # ...with accuracy at the base rate
    df.loc[narrowed, "positive_rate"] = 0.02 + 0.001 * df.loc[narrowed, "seed"]  # ...as it predicts one class
    metrics = ["eo_gap", "accuracy", "positive_rate"]
    lines = sweep_findings(sweep_effects(df, metrics=metrics), metric="eo_gap")
    assert "accuracy fell by 0.24" in lines[0] and "leaned towards one class" in lines[0]
    # the same loss of accuracy, but the positive rate did not move: no story about one class
    df.loc[narrowed, "positive_rate"] = df.loc[~narrowed & (df.constraint == "none"), "positive_rate"].to_numpy() + 0.001
    assert "leaned towards one class" not in sweep_findings(sweep_effects(df, metrics=metrics), metric="eo_gap")[0]
    plain = sweep_findings(sweep_effects(_planted_effects_frame(), metrics=["eo_gap"]), metric="eo_gap")
    assert "one class" not in plain[0]


# -- the store belongs to its grid -------------------------------------------------------------
SMALL = {**TINY, "constraints": {"epochs": [0.5]}}


def test_a_store_of_another_grid_is_refused_unless_extended_and_status_counts_the_grids_cells(tmp_path):
    store = tmp_path / "s"
    run_sweep(SMALL, store=store, progress=False)
    assert sweep_status(store)["done"] == sweep_status(store)["total"] == 2
    ResultStore(store).put({"something": "else"}, {"x": 1})  # a record of no grid in the folder
    st = sweep_status(store)
    assert (st["done"], st["total"], st["remaining"]) == (2, 2, 0)
    other = {**SMALL, "seeds": [1]}
    with pytest.raises(ValueError, match="holds the records of another grid.*extend=True"):
        run_sweep(other, store=store, progress=False)
    df = run_sweep(other, store=store, progress=False, extend=True)
    assert set(df["seed"]) == {1} and len(df) == 2  # the frame holds this grid's cells only
    st = sweep_status(store)
    assert (st["done"], st["total"]) == (4, 4)
    run_sweep(SMALL, store=store, progress=False)  # a grid the store already holds runs without extend


def _write_csv(path, rng, n=600, shift=0.0):
    import pandas as pd

    g = rng.integers(0, 2, n)
    x1 = rng.normal(size=n) + 0.8 * g
    x2 = rng.normal(size=n)
    y = (x1 + 0.5 * x2 + shift + rng.normal(scale=0.7, size=n) > 0.4).astype(int)
    pd.DataFrame({"x1": x1, "x2": x2, "group": np.where(g == 1, "b", "a"), "outcome": np.where(y == 1, "yes", "no")}
                 ).to_csv(path, index=False)


def test_a_grid_runs_on_a_csv_table_and_a_changed_file_gets_cells_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    _write_csv(tmp_path / "mine.csv", rng)
    grid = {**SMALL, "datasets": [{"csv": "mine.csv", "label": "outcome", "sensitive": "group", "positive_label": "yes"}],
            "mitigations": ["erm", "threshold"], "training": {**SMALL["training"], "epochs": 20, "lr": 0.02, "batch_size": 64}}
    df = run_sweep(grid, store="s", progress=False)
    assert set(df["dataset"]) == {"mine"} and len(df) == 4 and df["trained"].all()
    sha = df["dataset_spec"].iloc[0]["sha256"]
    assert len(sha) == 64 and (df["accuracy"] > 0.6).all() and df["eo_gap"].notna().all()
    _write_csv(tmp_path / "mine.csv", np.random.default_rng(1), shift=0.5)  # the file changes
    df2 = run_sweep(grid, store="s", progress=False, extend=True)
    assert len(df2) == 4 and df2["dataset_spec"].iloc[0]["sha256"] != sha  # new cells, the old records not mixed in
    assert len(ResultStore("s")) == 8
    with pytest.raises(ValueError, match="built-in dataset"):
        expand_grid({**grid, "datasets": [{"csv": "mine.csv", "label": "outcome", "sensitive": "group", "name": "adult"}]})
