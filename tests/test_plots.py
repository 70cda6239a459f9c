import pandas as pd
import pytest

from trustkit import plots


@pytest.fixture
def results():
    return pd.DataFrame({"dataset": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
                         "accuracy": [0.8, 0.82, 0.7, 0.71], "dp_gap": [0.1, 0.12, 0.2, 0.25],
                         "pgd@0.1": [0.5, 0.55, 0.4, 0.42], "corruption_acc@1": [0.7, 0.72, None, None],
                         "corruption_acc@5": [0.5, 0.52, None, None]})


def test_charts_render_to_png(results, tmp_path):
    charts = {
        "tradeoff": plots.tradeoff_chart(results),
        "robust": plots.robustness_chart(results, metrics=["accuracy", "pgd@0.1"]),
        "severity": plots.severity_chart(results),
    }
    for name, chart in charts.items():
        path = plots.save_chart(chart, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = charts["tradeoff"].to_dict()
    assert "layer" in spec


def test_chart_errors(results):
    with pytest.raises(ValueError, match="chart needs columns"):
        plots.tradeoff_chart(results, x="eo_gap")
    with pytest.raises(ValueError, match="none of"):
        plots.robustness_chart(results, metrics=["fgsm@9"])
    with pytest.raises(ValueError, match="no corruption_acc"):
        plots.severity_chart(results.drop(columns=["corruption_acc@1", "corruption_acc@5"]))


def test_selection_charts_render(tmp_path):
    sweep = pd.DataFrame({"method": ["v"] * 4, "lam": [0.0, 0.0, 1.0, 1.0], "eo_gap": [0.2, 0.22, 0.1, 0.12]})
    ex = pd.DataFrame({"method": ["a"] * 50 + ["b"] * 50, "cf_gap": range(100), "uncertainty": [0.1] * 100,
                       "distinctiveness": [1.0] * 100, "group": ["g"] * 100})
    for name, chart in {"sweep": plots.sweep_chart(sweep, x="lam", y="eo_gap", by="method"),
                        "box": plots.box_chart(ex, value="cf_gap"), "map": plots.data_map_chart(ex)}.items():
        assert plots.save_chart(chart, tmp_path / f"{name}.png").stat().st_size > 1000
    q = plots.box_chart(ex, value="cf_gap").to_dict()
    med = [d for d in q["datasets"].values()][0]
    assert sorted(r["median"] for r in med) == [24.5, 74.5]


def test_image_grid_png():
    import numpy as np

    png = plots.image_grid(np.random.default_rng(0).random((5, 1, 8, 8)), [str(i) for i in range(5)], columns=3)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"images must be \(n, C, H, W\)"):
        plots.image_grid(np.zeros((2, 8, 8)))


def _sweep_frame():
    import numpy as np

    rows = []
    for mit in ("erm", "fair_penalty"):
        for seed in range(3):
            rows.append({"constraint": "none", "level": 1.0, "mitigation": mit, "seed": seed, "eo_gap": 0.2 + 0.01 * seed,
                         "train_time_s": 2.0, "accuracy": 0.8})
            for lv in (0.5, 0.1):
                rows.append({"constraint": "time", "level": lv, "mitigation": mit, "seed": seed,
                             "eo_gap": 0.2 + (0.5 - lv) * (1 if mit == "erm" else 0.1), "train_time_s": 2 * lv,
                             "accuracy": 0.8 - (0.5 - lv) / 10})
            for lv in ("int8", "int4"):
                rows.append({"constraint": "quantize", "level": lv, "mitigation": mit, "seed": seed,
                             "eo_gap": np.nan if lv == "int4" and seed == 0 else 0.21, "train_time_s": 2.0, "accuracy": 0.79})
    import pandas as pd

    return pd.DataFrame(rows)


def test_constraint_chart_puts_each_reference_first_and_orders_levels_by_tightness():
    from trustkit.plots import constraint_chart

    ch = constraint_chart(_sweep_frame(), metric="eo_gap")
    data = ch.data
    time = data[(data["constraint"] == "time") & (data["mitigation"] == "erm")].sort_values("order")
    assert time["level_label"].tolist() == ["ref", "0.5", "0.1"]
    assert time["eo_gap_mean"].tolist() == pytest.approx([0.21, 0.2, 0.6])
    q = data[(data["constraint"] == "quantize") & (data["mitigation"] == "erm")].sort_values("order")
    assert q["level_label"].tolist() == ["ref", "int8", "int4"] and q["n"].tolist() == [3, 3, 2]
    assert "none" not in set(data["constraint"])


def test_frontier_and_interaction_charts_summarise_cells():
    from trustkit.plots import frontier_chart, interaction_chart

    df = _sweep_frame()
    fr = frontier_chart(df, x="train_time_s", y="eo_gap")
    means = fr.layer[0].data
    assert len(means) == 2 * 5  # (constraint, level) cells × mitigations
    front = fr.layer[1].data
    assert front["train_time_s_mean"].min() == pytest.approx(0.2)  # the cheapest cell is on the front
    inter = interaction_chart(df, metric="eo_gap")
    d = inter.data.set_index(["constraint", "mitigation"])
    assert d.loc[("time", "erm"), "eo_gap_mean"] > d.loc[("time", "fair_penalty"), "eo_gap_mean"]
    with pytest.raises(ValueError, match="needs columns"):
        frontier_chart(df.drop(columns=["level"]), x="train_time_s", y="eo_gap")
