"""Empirical checks of the bounds: the simulated class, the slope fit, gap vs steps, the Gaussian model."""

import numpy as np
import pytest

from trustkit.bounds import achievable_gap, min_certifiable_gap
from trustkit.experiments import (
    gap_vs_steps,
    gaussian_model_task,
    loglog_slope,
    measured_gaussian_frontier,
    oracle_gap_vs_steps,
)


def test_simulated_class_sits_inside_the_admissible_region():
    eta, sigma = 0.1, 0.5
    sim = oracle_gap_vs_steps(T_grid=[16, 64, 256], sigma=sigma, runs=2000, seed=1)
    fit = loglog_slope(sim["T"], sim["gap"])
    assert fit["low"] <= -0.5 <= fit["high"]
    for T, g in sim.groupby("T").gap:
        certified = g.quantile(1 - eta)
        assert min_certifiable_gap(T, eta, sigma) <= certified <= achievable_gap(T, eta, sigma)
        # SGD with steps 1/t is the sample mean: |θ_T − v| ~ |N(0, σ²/T)|
        assert g.mean() == pytest.approx(sigma * np.sqrt(2 / (np.pi * T)), rel=0.06)


def test_loglog_slope_recovers_a_planted_power_and_refuses_too_little_data():
    rng = np.random.default_rng(0)
    T = np.repeat([10, 30, 100, 300], 8)
    gap = 2.0 * T**-0.3 * np.exp(rng.normal(0, 0.05, len(T)))
    fit = loglog_slope(T, gap)
    assert fit["low"] < -0.3 < fit["high"] and fit["high"] - fit["low"] < 0.1
    with pytest.raises(ValueError, match="at least 3 positive gaps"):
        loglog_slope([10, 10], [0.1, 0.2])
    assert loglog_slope([1, 2, 3, 4], [0.5, 0.0, 0.3, 0.2])["dropped_zero_gaps"] == 1


def test_gap_vs_steps_trains_exactly_T_steps(tmp_path):
    df = gap_vs_steps("german", T_grid=[4, 16], seeds=[0, 1], store=tmp_path, progress=False)
    assert sorted(df["T"].unique()) == [4, 16] and len(df) == 4
    assert df.dp_gap.between(0, 1).all() and df.accuracy.between(0, 1).all()
    with pytest.raises(ValueError, match="at least two values"):
        gap_vs_steps("german", T_grid=[4])
    with pytest.raises(TypeError, match="T_grid"):
        gap_vs_steps("german", T_grid=[4, 2.5])


def test_gaussian_model_task_has_the_stated_base_rates():
    task = gaussian_model_task(n=20000, q0=0.6, q1=0.3, seed=0)
    y = np.concatenate([task.train.y, task.val.y, task.test.y])
    a = np.concatenate([task.train.a, task.val.a, task.test.a])
    assert y[a == 0].mean() == pytest.approx(0.6, abs=0.02) and y[a == 1].mean() == pytest.approx(0.3, abs=0.02)
    assert task.sensitive_as_feature and task.feature_names[0] == "score"


def test_fairness_penalty_moves_the_gaussian_model_along_the_frontier():
    df = measured_gaussian_frontier(lams=[0.0, 4.0], seeds=[0], epochs=10, progress=False)
    fair, plain = df[df.lam == 4.0].iloc[0], df[df.lam == 0.0].iloc[0]
    assert fair.dp_gap < plain.dp_gap - 0.1
    assert fair.accuracy < plain.accuracy


def test_an_existing_comparison_runs_in_local_processes_with_the_same_results(tmp_path):
    seq = gap_vs_steps("german", T_grid=[4, 16], seeds=[0, 1], progress=False)
    par = gap_vs_steps("german", T_grid=[4, 16], seeds=[0, 1], store=tmp_path, progress=False,
                       executor="processes", workers=2)
    # same runs; a worker's single torch thread may round a last bit differently from two threads
    assert par["T"].tolist() == seq["T"].tolist() and par["seed"].tolist() == seq["seed"].tolist()
    assert par["dp_gap"].tolist() == pytest.approx(seq["dp_gap"].tolist(), abs=0.02)
    assert par["accuracy"].tolist() == pytest.approx(seq["accuracy"].tolist(), abs=0.02)
    assert len(list(tmp_path.glob("*.json"))) == 4
