"""The result store and grids: atomic writes, resume after a kill, nothing lost."""

import json
import subprocess
import sys

import pytest

from trustkit.experiments import ResultStore, erm_overview, run_grid, run_key


def test_run_key_is_stable_and_order_free():
    assert run_key({"a": 1, "b": [1, 2]}) == run_key({"b": [1, 2], "a": 1})
    assert run_key({"a": 1}) != run_key({"a": 2})


def test_a_killed_sweep_keeps_finished_results_and_resumes(tmp_path):
    store = ResultStore(tmp_path)
    calls = []

    def run(cfg):
        calls.append(cfg["i"])
        if cfg["i"] == 2 and len(calls) == 3:
            raise KeyboardInterrupt  # the person pressed stop during the third run
        return {"value": cfg["i"] ** 2}

    configs = [{"i": i} for i in range(5)]
    with pytest.raises(KeyboardInterrupt):
        run_grid(configs, run, store=store, progress=False)
    assert len(store) == 2  # nothing but the two finished records is left in the folder
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(f"{run_key({'i': i})}.json" for i in (0, 1))
    df = run_grid(configs, run, store=store, progress=False)
    assert calls == [0, 1, 2, 2, 3, 4]  # 0 and 1 were not run again
    assert df["value"].tolist() == [0, 1, 4, 9, 16]


def test_store_survives_a_killed_process(tmp_path):
    code = f"""
import os
from trustkit.experiments import ResultStore, run_grid
store = ResultStore({str(tmp_path)!r})
def run(cfg):
    if cfg["i"] == 3:
        os._exit(9)  # hard kill, no clean-up
    return {{"v": cfg["i"]}}
run_grid([{{"i": i}} for i in range(6)], run, store=store, progress=False)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == 9
    store = ResultStore(tmp_path)
    assert sorted(r["i"] for r in store.records()) == [0, 1, 2]
    for f in tmp_path.glob("*.json"):
        json.loads(f.read_text())  # every file is complete JSON


def test_erm_overview_rejects_bad_names_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'compass'"):
        erm_overview(["compas", "compass"], seeds=[0], store=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"dataset 'mnist' needs dataset_kwargs=\{'mnist': \{'root': ...\}\}"):
        erm_overview(["mnist"], seeds=[0], progress=False)
    with pytest.raises(ValueError, match="dataset 'csv' needs dataset_kwargs"):
        erm_overview(["csv"], seeds=[0], progress=False)
    with pytest.raises(ValueError, match="time_budget_s must be a number > 0"):
        erm_overview(["german"], seeds=[0], time_budget_s=0, progress=False)
    assert len(ResultStore(tmp_path)) == 0


def test_erm_overview_on_german(tmp_path):
    df = erm_overview(["german"], seeds=[0, 1], time_budget_s=2.0, epochs=5, store=tmp_path, progress=False)
    assert len(df) == 2 and len(ResultStore(tmp_path)) == 2
    for col in ("accuracy", "dp_gap", "eo_gap", "fgsm@0.1", "pgd@0.1", "noise_acc", "label_noise_acc",
                "train_time_s", "peak_memory_mb", "gflops"):
        assert df[col].notna().all(), col
    assert (df["pgd@0.1"] <= df["fgsm@0.1"] + 1e-9).all()
    assert (df["train_time_s"] <= 2.0 * 1.15).all()


def test_erm_overview_on_your_own_csv(tmp_path):
    from trustkit.data import german_frame

    path = tmp_path / "credit.csv"
    german_frame().to_csv(path, index=False)  # a real table, as a practitioner would bring it
    spec = {"path": path, "label": "credit", "sensitive": "sex", "positive_label": "good", "drop": ["age_group"]}
    df = erm_overview(["csv"], seeds=[0], time_budget_s=1.0, epochs=3, dataset_kwargs={"csv": spec},
                      store=tmp_path / "store", progress=False)
    assert df["task"].tolist() == ["credit"] and df["dp_gap"].notna().all()
    assert ResultStore(tmp_path / "store").records()[0]["loader"]["path"] == str(path)


def test_selection_comparison_on_german(tmp_path):
    from trustkit.experiments import selection_comparison

    df = selection_comparison("german", methods=["whole", "random", "vtrust", "threshold"], fraction=0.5, lams=[0.5], seeds=[0],
                              select_epochs=2, train_epochs=3, store=tmp_path, progress=False)
    assert df["label"].tolist() == ["whole", "random", "vtrust λ=0.5", "threshold"]
    assert (df.loc[df.method == "random", "n_train"] == 300).all() and (df.loc[df.method == "whole", "n_train"] == 600).all()
    assert df.loc[df.method == "vtrust", "residual"].between(0, 1).all()
    assert len(ResultStore(tmp_path)) == 4
    with pytest.raises(ValueError, match="unknown method 'vtrustt'"):
        selection_comparison("german", methods=["vtrustt"], progress=False)


def test_selection_explanations_columns():
    from trustkit.experiments import selection_explanations

    ex = selection_explanations("german", methods=["random", "vtrust"], fraction=0.5, select_epochs=2, train_epochs=3)
    assert set(ex.method) == {"random", "vtrust"}
    assert {"cf_gap", "uncertainty", "distinctiveness", "index", "group"} <= set(ex.columns)
    assert (ex.cf_gap >= 0).all()


def test_lambda_search_meets_the_threshold_on_validation():
    from trustkit.data import load_german
    from trustkit.experiments import lambda_search

    task = load_german(seed=0)
    easy = lambda_search(task, threshold=0.99, steps=2, select_epochs=1, train_epochs=2)
    assert easy["lam"] == 0.0 and len(easy["history"]) == 2
    hard = lambda_search(task, threshold=0.0, steps=2, select_epochs=1, train_epochs=2)
    assert hard["lam"] is None and "even λ = 1" in hard["message"]
    mid_t = sorted(h["error"] for h in easy["history"])
    res = lambda_search(task, threshold=sum(mid_t) / 2, steps=3, select_epochs=1, train_epochs=2)
    if res["lam"] not in (None, 0.0):
        chosen = [h for h in res["history"] if h["lam"] == res["lam"]][0]
        assert chosen["error"] <= sum(mid_t) / 2
    with pytest.raises(ValueError, match="metric must be 'error'"):
        lambda_search(task, threshold=0.3, metric="accuracy")


def test_robust_selection_comparison_small(tmp_path):
    from trustkit.experiments import robust_selection_comparison

    df = robust_selection_comparison("digits", methods=["clean", "uaug", "vtrust"], corruptions=["contrast"],
                                     aug_factor=0.2, fraction=0.5, seeds=[0], epochs=1, saug_rounds=1,
                                     store=tmp_path, progress=False)
    assert df["method"].tolist() == ["clean", "uaug", "vtrust"]
    n = df.set_index("method")["n_train"]
    assert n["uaug"] == n["clean"] + round(0.2 * n["clean"]) and n["vtrust"] < n["uaug"]
    assert df["robust_acc"].between(0, 1).all() and df["standard_acc"].between(0, 1).all()
    with pytest.raises(ValueError, match="unknown dataset"):
        robust_selection_comparison("compas", progress=False)


def test_erm_overview_scores_every_seed_on_one_corruption_draw(tmp_path, monkeypatch):
    from trustkit.experiments import _overview

    seen, real = [], _overview.trust_profile

    def spy(model, task, **kw):
        seen.append(kw)
        return real(model, task, **kw)

    monkeypatch.setattr(_overview, "trust_profile", spy)
    df = erm_overview(["digits"], seeds=[1, 2], time_budget_s=2.0, epochs=1, corruption_examples=40,
                      store=tmp_path, progress=False)
    assert [(kw["seed"], kw["corruption_seed"], kw["corruption_examples"]) for kw in seen] == [(1, 0, 40), (2, 0, 40)]
    assert df["corruption_acc"].between(0, 1).all()
    with pytest.raises(ValueError, match="corruption_examples"):
        erm_overview(["digits"], seeds=[0], corruption_examples=0, progress=False)
