"""The notebook panels: their numbers against the functions they show, and one driven in a real browser."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from trustkit.bounds import lower_bound_steps, upper_bound_steps
from trustkit.experiments import sweep_effects
from trustkit.widgets import bounds_panel, bounds_point, numbers_table, tradeoff_panel, tradeoff_point

CHROMIUM = Path("/usr/bin/chromium")


def planted_sweep(seeds=(0, 1, 2)) -> pd.DataFrame:
    """Two mitigations; time and quantisation constraints with known per-seed effects on accuracy."""
    effect = {("time", 0.5): -0.05, ("time", 0.25): -0.12, ("quantize", "int8"): -0.01, ("quantize", "int4"): -0.08}
    rows = []
    for s in seeds:
        for mit, shift in (("erm", 0.0), ("fair_penalty", -0.02)):
            base = 0.80 + shift + 0.01 * s
            rows.append({"dataset": "compas", "model": "mlp-32", "mitigation": mit, "seed": s, "constraint": "none",
                         "level": 1.0, "accuracy": base, "eo_gap": 0.2 - 0.01 * s})
            for (c, lv), d in effect.items():
                rows.append({"dataset": "compas", "model": "mlp-32", "mitigation": mit, "seed": s, "constraint": c,
                             "level": lv, "accuracy": base + d + 0.002 * s, "eo_gap": 0.2 - 0.01 * s + d / 2})
    return pd.DataFrame(rows)


def test_tradeoff_point_gives_the_planted_effects():
    f = planted_sweep()
    p = tradeoff_point(f, constraint="time", level=0.25, metrics=["accuracy", "eo_gap"], mitigation="fair_penalty")
    assert p["accuracy"]["diff"] == pytest.approx(-0.12 + 0.002, abs=1e-9)  # mean of 0.000/0.002/0.004 extra
    assert p["accuracy"]["reference"] == pytest.approx(0.79, abs=1e-9)
    assert p["eo_gap"]["diff"] == pytest.approx(-0.06, abs=1e-9) and p["accuracy"]["n"] == 3
    p8 = tradeoff_point(f, constraint="quantize", level="int8", metrics=["accuracy"], mitigation="erm")
    assert p8["accuracy"]["diff"] == pytest.approx(-0.008, abs=1e-9)
    # the same numbers as the effects table of the trade-off notebook, corrected in the same family
    e = sweep_effects(f, metrics=["accuracy"])
    row = e[(e.constraint == "quantize") & (e.level == "int8") & (e.mitigation == "erm")].iloc[0]
    assert p8["accuracy"]["p_value"] == pytest.approx(row.p_value) and p8["accuracy"]["q_value"] == pytest.approx(row.q_value)
    assert p8["accuracy"]["verdict"] == row.verdict
    alone = sweep_effects(f[f.mitigation == "erm"], metrics=["accuracy"])  # a smaller family
    assert alone.family.iloc[0] != row.family and "over 8 tests" in row.family


def test_a_refused_setting_shows_no_numbers_of_the_previous_one():
    panel = tradeoff_panel(planted_sweep(), metrics=["accuracy"])
    assert panel.numbers and panel.table.value
    panel.controls["mitigation"].options = ["erm", "fair_penalty", "dro"]
    panel.controls["mitigation"].value = "dro"  # not in the sweep: refused
    assert panel.numbers == {} and panel.table.value == "" and "mitigation &#x27;dro&#x27; is not in the sweep" in panel.status.value


@pytest.mark.parametrize("kwargs, pattern", [
    ({"constraint": "prune", "level": 0.5, "mitigation": "erm"}, r"constraint 'prune' is not in the sweep; allowed: \['quantize', 'time'\]"),
    ({"constraint": "time", "level": 0.3, "mitigation": "erm"}, r"level 0.3 of time is not in the sweep; allowed: \['0.5', '0.25'\]"),
    ({"constraint": "time", "level": 0.5, "mitigation": "dro"}, r"mitigation 'dro' is not in the sweep"),
    ({"constraint": "time", "level": 0.5}, r"several mitigation values"),
])
def test_tradeoff_point_refuses_settings_the_sweep_lacks(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tradeoff_point(planted_sweep(), **kwargs)


def test_tradeoff_panel_redraws_when_a_control_moves():
    f = planted_sweep()
    panel = tradeoff_panel(f, metrics=["accuracy"])
    assert panel.controls["constraint"].value == "quantize" and panel.controls["level"].value == "int8"
    before = panel.numbers["accuracy"]["diff"]
    panel.controls["level"].value = "int4"
    assert panel.numbers["accuracy"]["diff"] == pytest.approx(-0.078) != before
    panel.controls["constraint"].value = "time"  # the levels follow the type, loosest first
    assert panel.controls["level"].options == ("0.5", "0.25")
    assert panel.numbers["accuracy"]["diff"] == pytest.approx(-0.048)
    assert 'data-metric="accuracy" data-field="diff">-0.0480<' in panel.table.value


def test_bounds_panel_shows_the_closed_form():
    p = bounds_point(0.05, 0.1, 0.5)
    assert p["steps_needed"] == pytest.approx(lower_bound_steps(0.05, 0.1, 0.5))
    assert p["steps_sufficient"] == pytest.approx(upper_bound_steps(0.05, 0.1, 0.5)) and p["ratio"] > 1
    panel = bounds_panel()
    needed = panel.numbers["steps_needed"]
    panel.controls["delta"].value = 0.01  # a 5x smaller gap needs more steps
    assert panel.numbers["steps_needed"] > needed
    assert "steps are needed" in panel.message


def test_numbers_table_marks_every_cell():
    t = numbers_table({"eo_gap": {"reference": 0.2, "value": 0.1, "n": 3}, "ratio": 2.0}, digits=2)
    assert 'data-metric="eo_gap" data-field="reference">0.20<' in t and 'data-field="n">3<' in t
    assert 'data-metric="ratio" data-field="value">2.00<' in t


def test_adaptive_panel_trains_the_quick_model():
    from trustkit.widgets import adaptive_panel

    panel = adaptive_panel("german", budget_s=5.0)
    numbers = panel.refresh()
    assert 0.4 < numbers["accuracy"] <= 1 and numbers["time_s"] <= 5.0 * 1.05
    assert "slices, stopped by" in panel.message and "data-metric=\"dp_gap\"" in panel.table.value


def test_vtrust_panel_draws_its_comparison_with_whole_data(tmp_path):
    from trustkit.widgets import vtrust_panel, vtrust_point

    panel = vtrust_panel("german", lam=0.5, fraction=0.5, select_epochs=2, train_epochs=3, store=tmp_path / "store")
    numbers = panel.refresh()
    assert "<svg" in panel.chart.value and "error loading" not in panel.chart.value.lower()
    again = vtrust_point("german", lam=0.5, fraction=0.5, select_epochs=2, train_epochs=3, store=tmp_path / "store")
    assert numbers == again  # the store gives the same run back
    assert numbers["error"]["diff"] == pytest.approx(numbers["error"]["value"] - numbers["error"]["reference"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.notebook
def test_a_trade_off_panel_served_by_voila_answers_a_slider_in_a_browser(tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (make installs it with apt: apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package (requirements.txt)")
    pytest.importorskip("voila", reason="needs voila (requirements.txt)")
    frame = planted_sweep()
    frame.to_csv(tmp_path / "sweep.csv", index=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import pandas as pd\nfrom trustkit.widgets import tradeoff_panel\n"
        "panel = tradeoff_panel(pd.read_csv('sweep.csv'), metrics=['accuracy', 'eo_gap'])\npanel")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, tmp_path / "panel.ipynb")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(tmp_path / "voila.log", "w")  # a file, not a pipe nobody reads: a full pipe would block the server
    server = subprocess.Popen([sys.executable, "-m", "voila", "panel.ipynb", f"--port={port}", "--no-browser",
                               "--Voila.ip=127.0.0.1", "--VoilaConfiguration.show_tracebacks=True"],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None:
                pytest.fail(f"voila exited: {(tmp_path / 'voila.log').read_text()[-3000:]}")
            time.sleep(0.3)
        cell = 'td[data-metric="accuracy"][data-field="diff"]'
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                for attempt in range(2):  # a second page (a fresh kernel) if the first never rendered
                    page.goto(f"http://127.0.0.1:{port}/", timeout=90_000, wait_until="commit")
                    try:
                        page.wait_for_selector(cell, timeout=75_000)
                        break
                    except Exception:
                        if attempt == 1:
                            pytest.fail("the panel did not show; voila's log: "
                                        f"{(tmp_path / 'voila.log').read_text()[-3000:]}")
                first = tradeoff_point(frame, constraint="quantize", level="int8", metrics=["accuracy"], mitigation="erm")
                assert page.inner_text(cell) == f"{first['accuracy']['diff']:.4f}"
                page.locator(".noUi-handle").first.focus()  # the level slider; one step to the right: int4
                page.keyboard.press("ArrowRight")
                want = tradeoff_point(frame, constraint="quantize", level="int4", metrics=["accuracy"], mitigation="erm")
                expected = f"{want['accuracy']['diff']:.4f}"
                page.wait_for_function(f"() => document.querySelector('{cell}')?.innerText === '{expected}'",
                                       timeout=30_000)
                ref = f"{want['accuracy']['reference']:.4f}"
                assert page.inner_text('td[data-metric="accuracy"][data-field="reference"]') == ref
                assert expected != f"{first['accuracy']['diff']:.4f}"
                chart = page.locator(".tk-chart svg").first  # the chart, drawn as SVG
                chart.wait_for(timeout=30_000)
                assert chart.evaluate("svg => svg.getBoundingClientRect().width > 100")
                assert "Error loading script" not in page.inner_text("body")
                page.screenshot(path=str(tmp_path / "panel.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    assert (tmp_path / "panel.png").stat().st_size > 1000
    print(f"screenshot: {tmp_path / 'panel.png'}")
