"""Notebook parameters, the tour notebook executed through papermill, and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from trustkit.report import check_parameters, run_notebook

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"quick": bool, "seeds": [int], "time_budget_s": float, "root": (str, None)}
GOOD = {"quick": True, "seeds": [0, 1], "time_budget_s": 2, "root": None}


def test_check_parameters_accepts_good_values():
    check_parameters(GOOD, SPEC, choices={"seeds": [0, 1, 2]})


@pytest.mark.parametrize(
    "change, error, pattern",
    [
        ({"quick": "yes"}, TypeError, "parameter 'quick' must be bool; got 'yes'"),
        ({"seeds": 3}, TypeError, "parameter 'seeds' must be list of int"),
        ({"seeds": [0, "1"]}, TypeError, "parameter 'seeds' must be list of int"),
        ({"time_budget_s": "2"}, TypeError, "parameter 'time_budget_s' must be float"),
        ({"root": 3}, TypeError, "parameter 'root' must be str or None"),
        ({"seeds": [0, 7]}, ValueError, r"parameter 'seeds' has \[7\]; allowed"),
    ],
)
def test_check_parameters_errors(change, error, pattern):
    with pytest.raises(error, match=pattern):
        check_parameters({**GOOD, **change}, SPEC, choices={"seeds": [0, 1, 2]})


def test_every_notebook_has_a_parameters_cell():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        assert "quick" in tagged[0].source
        assert not any("TODO" in c.source for c in nb.cells)


@pytest.mark.notebook
def test_tour_notebook_runs_in_quick_mode(tmp_path):
    from trustkit.data import german_frame

    csv = tmp_path / "credit.csv"  # the German credit table, brought as a person's own CSV
    german_frame().drop(columns=["age_group"]).to_csv(csv, index=False)
    params = {"datasets": ["digits"], "seeds": [0, 1], "time_budget_s": 1.0, "static_charts": True,
              "corruption_examples": 100, "csv_path": str(csv), "csv_label": "credit", "csv_sensitive": "sex", "csv_positive_label": "good"}
    paths = run_notebook("tour", out_dir=tmp_path, parameters=params, progress=False)
    assert paths["html"].stat().st_size > 10_000
    nb = nbformat.read(paths["notebook"], as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    import pandas as pd

    results = pd.read_csv(tmp_path / "tour_results.csv")
    assert sorted(results["task"].unique()) == ["credit", "digits"] and len(results) == 4
    assert results.loc[results.task == "credit", "dp_gap"].notna().all()
    assert (tmp_path / "figures" / "robustness.png").is_file()
    assert (tmp_path / "figures" / "corruption_severity.png").is_file()
    # the corruption subset reaches the image runs (and only them: a table's runs do not depend on it)
    from trustkit.experiments import ResultStore

    configs = {(r["dataset"], r.get("corruption_examples")) for r in ResultStore(tmp_path / "tour_store")}
    assert configs == {("digits", 100), ("csv", None)}


def test_wrong_parameter_names_and_types_are_refused_before_the_notebook_runs(tmp_path):
    with pytest.raises(TypeError, match="parameter 'seeds' must be list of int"):
        run_notebook("tour", out_dir=tmp_path, parameters={"seeds": "0,1"}, html=False, progress=False)
    with pytest.raises(ValueError, match="has no parameter 'seed'. Did you mean 'seeds'"):
        run_notebook("tradeoffs", out_dir=tmp_path, parameters={"seed": [0]}, html=False, progress=False)
    assert not list(tmp_path.glob("*.ipynb"))  # nothing ran


@pytest.mark.notebook
def test_report_html_hides_the_code_unless_asked(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("# papermill parameters (quick preset)\nquick: bool = True\nout_dir: str = '.'",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("secret_code_marker = 6 * 7\nprint('the answer is', secret_code_marker)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src = tmp_path / "tiny.ipynb"
    nbformat.write(nb, src)
    hidden = run_notebook(src, out_dir=tmp_path / "a", progress=False)["html"].read_text()
    assert "the answer is 42" in hidden and "secret_code_marker = 6" not in hidden
    shown = run_notebook(src, out_dir=tmp_path / "b", progress=False, show_code=True)["html"].read_text()
    assert "the answer is 42" in shown and "secret_code_marker" in shown


def _executed_outputs(paths) -> tuple[list, str]:
    """The outputs of an executed notebook's code cells (none an error) and their text."""
    nb = nbformat.read(paths["notebook"], as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    return outputs, "".join(o.get("text", "") for o in outputs)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "trustkit.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_datasets_and_train():
    out = _cli("datasets", "german", "compas")
    assert out.returncode == 0 and "6172" in out.stdout and "1000" in out.stdout
    out = _cli("train", "--dataset", "german", "--epochs", "2", "--flops-budget", "1e12")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["task"] == "german" and summary["epochs"] == 2


def test_cli_errors_are_one_line():
    out = _cli("train", "--dataset", "adlt")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("trustkit: error: unknown dataset 'adlt'")
    out = _cli("train", "--dataset", "german", "--time-budget", "-1")
    assert out.returncode == 2 and "Budget.time_s must be a number > 0" in out.stderr
    out = _cli("report", "tour", "bounds", "-p", "seed", "[0]", "--out", "/nonexistent/never-written")
    assert out.returncode == 2 and out.stderr.startswith("trustkit: error: no notebook in this report declares "
                                                         "parameter 'seed' (did you mean 'seeds'?)")
    out = _cli("report", "vtrust", "--preset", "slow")
    assert out.returncode == 2 and "preset must be one of ['full', 'quick']" in out.stderr


@pytest.mark.notebook
def test_vtrust_notebook_rejects_lambda_outside_unit_interval(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match=r"lam and lams must lie in \[0, 1\]"):
        run_notebook("vtrust", out_dir=tmp_path, parameters={"lam": 1.5}, html=False, progress=False)


@pytest.mark.notebook
def test_adaptive_notebook_rejects_bad_parameters(tmp_path):
    import papermill as pm

    with pytest.raises(TypeError, match="parameter 'regimes' must be list of str"):  # refused before it runs
        run_notebook("adaptive", out_dir=tmp_path, parameters={"regimes": "low"}, html=False, progress=False)
    with pytest.raises(pm.PapermillExecutionError, match=r"parameter 'schedulers' has \['causal'\]; allowed"):
        run_notebook("adaptive", out_dir=tmp_path, parameters={"schedulers": ["causal"]}, html=False, progress=False)


@pytest.mark.notebook
def test_bounds_notebook_runs_in_quick_mode(tmp_path):
    params = {"dataset": "german", "T_grid": [8, 32, 128], "seeds": [0, 1], "frontier_lams": [0.0, 2.0, 8.0],
              "static_charts": True}
    paths = run_notebook("bounds", out_dir=tmp_path, parameters=params, progress=False)
    nb = nbformat.read(paths["notebook"], as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "certified gap inside the admissible region at every T: True" in text
    assert "german: slope of log(DP gap) on log T" in text and "steps are needed" in text
    assert "FAILED" not in "".join(str(o.get("data", {})) for o in outputs)
    for fig in ("bounds_simulated", "bounds_gap_vs_steps_german", "bounds_gaussian_frontier"):
        assert (tmp_path / "figures" / f"{fig}.png").is_file()


@pytest.mark.notebook
def test_bounds_notebook_rejects_bad_eta(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match=r"eta must lie in \(0, 0.25\)"):
        run_notebook("bounds", out_dir=tmp_path, parameters={"eta": 0.5}, html=False, progress=False)


@pytest.mark.notebook
def test_the_report_of_the_measuring_phases_feeds_the_guidelines(tmp_path):
    """One report: the sweep, adaptive training and VTruST in quick settings, then the guidelines read their stores."""
    import json

    import pandas as pd

    from trustkit.report import run_report, summary_paragraph

    params = {"static_charts": True, "tradeoffs.metrics": ["accuracy", "eo_gap", "robust_accuracy"], "tradeoffs.seeds": [0, 1],
              "adaptive.dataset": "compas", "adaptive.regimes": ["medium", "high"], "adaptive.seeds": [0, 1],
              "adaptive.schedulers": ["erm", "static", "fgsm_rs", "dynamic", "efficienttrust", "oracle", "atats_pid",
                                      "atats_bandit", "dual", "expgrad"],
              "vtrust.dataset": "german", "vtrust.seeds": [0], "vtrust.lams": [0.0, 1.0], "vtrust.fractions": [0.5],
              "vtrust.robust_corruptions": ["contrast", "gaussian_noise"], "vtrust.aug_factor": 0.2}
    results = run_report(["tradeoffs", "adaptive", "vtrust", "guidelines"], parameters=params, out_dir=tmp_path,
                         progress=False)
    assert [(r["name"], r["status"]) for r in results] == [("tradeoffs", "ok"), ("adaptive", "ok"), ("vtrust", "ok"),
                                                            ("guidelines", "ok")], [r["error"] for r in results]
    # the sweep
    _, text = _executed_outputs({"notebook": tmp_path / "tradeoffs" / "01_tradeoffs.ipynb"})
    assert "32 / 32 cells done, 0 failed" in text and "— eo_gap" in text and "panel, first setting:" in text
    assert "Benjamini–Hochberg over" in text and "Not tested for the EO gap" in text  # 2 seeds: nothing concluded
    res = pd.read_csv(tmp_path / "tradeoffs" / "sweep_quick.csv")
    assert len(res) == 32 and res["eo_gap"].notna().all() and res["robust_accuracy"].notna().all()
    eff = pd.read_csv(tmp_path / "tradeoffs" / "sweep_quick_effects.csv")
    assert set(eff["constraint"]) == {"epochs", "prune_structured", "quantize"} and (eff["verdict"] == "not tested").all()
    for fig in ("eo_gap_by_level", "eo_gap_vs_time", "robust_vs_time", "accuracy_vs_weight_bytes", "eo_gap_interaction"):
        for ext in ("png", "svg"):
            assert (tmp_path / "tradeoffs" / "figures" / f"sweep_quick_{fig}.{ext}").is_file()
    numbers = json.loads((tmp_path / "tradeoffs" / "numbers.json").read_text())
    assert (numbers["done"], numbers["total"], numbers["failed"], numbers["effects"]) == (32, 32, 0, len(eff))
    # adaptive training
    _, text = _executed_outputs({"notebook": tmp_path / "adaptive" / "03_adaptive_training.ipynb"})
    assert "reference full run on compas" in text and "compas, regime medium:" in text and "Holm over" in text
    assert "accuracy" in text and "stopped by" in text  # the panel ran once with its default values
    res = pd.read_csv(tmp_path / "adaptive" / "adaptive_compas.csv")
    assert len(res) == 2 * 10 * 2
    trained = res[res.method != "expgrad"]
    medium = trained[trained.regime == "medium"]
    # half the reference run's time: most methods are stopped by it (ERM, with no attack, may finish)
    assert medium.budget_s.notna().all() and (medium.stopped_by == "time_s").mean() >= 0.5
    assert ((medium.over_budget.fillna("") != "") == (medium.time_s > medium.budget_s)).all()
    tests = pd.read_csv(tmp_path / "adaptive" / "adaptive_tests_compas.csv")
    assert {"dp_gap", "robust_accuracy"} <= set(tests.metric)
    for name in ("fairness", "robustness"):
        assert (tmp_path / "adaptive" / "figures" / f"adaptive_pareto_{name}_compas.png").is_file()
    # VTruST
    nb = nbformat.read(tmp_path / "vtrust" / "04_vtrust.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "chosen on validation" in text and "selected images per augmentation" in text
    assert "Benjamini–Hochberg over" in text
    assert "panel, default values (VTruST against whole data" in text
    for fig in ("table1", "lambda", "fraction", "cfgap", "datamap"):
        assert (tmp_path / "vtrust" / "figures" / f"vtrust_{fig}_german.png").is_file()
    # the guidelines: rows from every phase's store, none concluded on 1-2 seeds (and never "ERM" by default)
    g = pd.read_csv(tmp_path / "guidelines" / "guidelines.csv")
    assert set(g.source) == {"trade-off sweep", "adaptive training", "data selection"}
    assert g.verdict.isin(["not tested", "did not train"]).all() and g.recommended.isna().all()
    assert g.evidence.str.contains("store ").all() and g.seeds.between(0, 2).all()
    assert (tmp_path / "guidelines" / "guidelines.md").read_text().startswith("# Guidelines")
    claims = pd.read_csv(tmp_path / "guidelines" / "claims.csv")
    assert {"EfficientTrust proposal", "VTruST paper (Das et al. 2024, Table 1)"} <= set(claims.made_by)
    # the index: one section per notebook, its paragraph made from that notebook's saved numbers
    index = (tmp_path / "index.html").read_text()
    for r in results:
        assert f"id='{r['name']}'" in index and (tmp_path / r["paths"]["html"]).is_file()
        para = summary_paragraph(r["name"], json.loads((tmp_path / r["name"] / "numbers.json").read_text()))
        assert not para.startswith(("Key numbers", "No key numbers")), para  # every template found its numbers
        import html as h
        assert h.escape(para) in index
    assert "32 of 32 sweep cells ran (0 failed)" in index
    # no page prints a path of the machine that ran it
    for page in tmp_path.rglob("*.html"):
        text = page.read_text()
        assert str(tmp_path) not in text and str(ROOT) not in text, page


@pytest.mark.notebook
def test_a_failed_notebook_is_marked_in_the_index_and_the_others_are_kept(tmp_path):
    from trustkit.report import run_report

    earlier = tmp_path / "bounds" / "figures"
    earlier.mkdir(parents=True)
    (earlier / "gap_vs_steps_from_an_earlier_run.png").write_bytes(b"\x89PNG")
    (tmp_path / "bounds" / "numbers.json").write_text('{"checks": 6}')
    results = run_report(["bounds", "guidelines"], parameters={"bounds.eta": 0.5}, out_dir=tmp_path, progress=False)
    status = {r["name"]: r for r in results}
    assert status["bounds"]["figures"] == [] and status["bounds"]["numbers"] == {}  # nothing of the earlier run shows
    assert status["bounds"]["status"] == "failed" and "ValueError: eta must lie in (0, 0.25)" in status["bounds"]["error"]
    assert status["guidelines"]["status"] == "ok" and (tmp_path / "guidelines" / "05_guidelines.html").is_file()
    index = (tmp_path / "index.html").read_text()
    assert "1 of 2 notebooks ran, 1 failed" in index and "eta must lie in (0, 0.25)" in index
    assert "from_an_earlier_run" not in index
    assert "class='status failed'" in index and "class='status ok'" in index
    assert (tmp_path / "bounds" / "02_lower_bounds.html").is_file()  # the page up to the failing cell


def test_a_report_plan_refuses_bad_input_before_anything_runs(tmp_path):
    from trustkit.report import plan_report

    with pytest.raises(ValueError, match="unknown notebook 'tours'; allowed: all, tour"):
        plan_report(["tours"])
    with pytest.raises(ValueError, match="preset must be one of"):
        plan_report(["tour"], preset="fast")
    with pytest.raises(ValueError, match="no notebook in this report declares parameter 'seed' \\(did you mean 'seeds'"):
        plan_report(["bounds", "vtrust"], parameters={"seed": [0]})
    with pytest.raises(TypeError, match="parameter 'seeds' must be list of int"):
        plan_report(["all"], parameters={"seeds": "0,1"})
    with pytest.raises(ValueError, match="dataset 'digits' does not fit notebook tradeoffs \\(01_tradeoffs.ipynb\\), which takes adult, compas, german"):
        plan_report(["all"], dataset="digits")
    with pytest.raises(ValueError, match="parameter 'bounds.lam' names notebook 'bounds', which is not in this report"):
        plan_report(["vtrust"], parameters={"bounds.lam": 1.0})
    plan = plan_report(["all"], dataset="adult", parameters={"seeds": [0], "vtrust.lam": 0.3}, out_dir=tmp_path)
    by = {p["name"]: p["parameters"] for p in plan}
    assert list(by) == ["tour", "tradeoffs", "bounds", "adaptive", "vtrust", "guidelines"]
    assert by["tour"]["datasets"] == ["adult"] and by["vtrust"]["dataset"] == "adult" and by["tradeoffs"]["datasets"] == ["adult"]
    assert by["vtrust"]["lam"] == 0.3 and "lam" not in by["bounds"] and by["bounds"]["seeds"] == [0]
    assert by["guidelines"]["reports_dir"] == ".." and "seeds" not in by["guidelines"]  # relative: no machine path
    assert all(p["out_dir"] == tmp_path / p["name"] for p in plan)
    full = {p["name"]: p["parameters"] for p in plan_report(["all"], preset="full")}
    assert all(v["quick"] is False for v in full.values())
    assert not list(tmp_path.iterdir())  # planning writes nothing


def test_the_index_paragraph_quotes_the_saved_numbers(tmp_path):
    from trustkit.report import save_numbers, summary_paragraph, write_index

    save_numbers({"dataset": "german", "fraction": 0.6, "seeds": 8, "verdicts": {"changed": 2, "inconclusive": 5},
                  "family": "Benjamini–Hochberg over 7 tests of selections against whole data (eo_gap), q < 0.05"},
                 tmp_path / "vtrust")
    save_numbers({"claim": {"lam": "vtrust λ=0.5", "verdict": "inconclusive"}}, tmp_path / "vtrust")
    import json

    numbers = json.loads((tmp_path / "vtrust" / "numbers.json").read_text())
    para = summary_paragraph("vtrust", numbers)
    assert para == ("On german at a 0.6 subset over 8 seeds, against whole data: 2 changed, 5 inconclusive (Benjamini–Hochberg "
                    "over 7 tests of selections against whole data (eo_gap), q < 0.05). VTruST's Table-1 claim (vtrust λ=0.5): "
                    "inconclusive.")
    write_index([{"name": "vtrust", "status": "ok", "error": None, "seconds": 12.0, "numbers": numbers,
                  "paths": {"html": "vtrust/04_vtrust.html"}, "figures": ["figures/a.png"]}], tmp_path)
    index = (tmp_path / "index.html").read_text()
    assert "2 changed, 5 inconclusive" in index and "href='vtrust/04_vtrust.html'" in index
    assert "src='vtrust/figures/a.png'" in index
    assert "http" not in index  # nothing fetched from anywhere
    assert summary_paragraph("vtrust", {"dataset": "german"}).startswith("Key numbers: dataset = german")
    with pytest.raises(TypeError, match="key number numbers.bad must be a number"):
        save_numbers({"bad": object()}, tmp_path)


CHROMIUM = Path("/usr/bin/chromium")


def _chart_notebook(path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("# papermill parameters (quick preset)\nquick: bool = True\nout_dir: str = '.'",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("Two interactive charts: $x^2$"),
        nbformat.v4.new_code_cell("import altair as alt, pandas as pd\n"
                                  "df = pd.DataFrame({'x': range(10), 'y': [v * v for v in range(10)]})\n"
                                  "alt.Chart(df).mark_line().encode(x='x', y='y')"),
        nbformat.v4.new_code_cell("alt.Chart(df).mark_bar().encode(x='x:O', y='y')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)


def test_offline_html_inlines_the_chart_libraries_once_and_drops_cdn_scripts():
    from trustkit.report import offline_html

    chart = '<div id="altair-viz-1"></div><script>maybeLoadScript("vega", "6"); maybeLoadScript("vega-embed", "7")</script>'
    page = ('<html><head><script src="https://cdnjs.cloudflare.com/require.min.js"></script></head><body>'
            + chart + chart + "</body></html>")
    out = offline_html(page)
    assert "cdnjs" not in out and out.count("window.vegaEmbed=") == 1
    assert '"vega_version": "6"' in out and '"vegaembed_version": "7"' in out
    assert out.index("window.vegaEmbed=") < out.index("altair-viz-1")  # the libraries load before any chart
    assert offline_html("<html><head></head><body>no charts</body></html>") == "<html><head></head><body>no charts</body></html>"


@pytest.mark.notebook
def test_a_report_page_draws_every_chart_in_a_browser_without_network(tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (make installs it with apt: apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package (requirements.txt)")
    src = tmp_path / "charts.ipynb"
    _chart_notebook(src)
    html = run_notebook(src, out_dir=tmp_path / "out", progress=False)["html"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else requests.append(r.url))
            page.goto(html.as_uri())
            charts = page.locator("div[id^=altair-viz-]")
            page.wait_for_function("() => [...document.querySelectorAll('div[id^=altair-viz-]')]"
                                   ".every(d => d.querySelector('svg, canvas'))", timeout=20_000)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert charts.count() == 2
            assert not errors and not requests, (errors, requests)
            assert page.locator(".error").count() == 0
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 1000
