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
