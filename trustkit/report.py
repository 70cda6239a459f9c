"""Run notebooks as parameterised reports (papermill) and export them to HTML (nbconvert).

Notebooks call :func:`check_parameters` right after their papermill ``parameters`` cell, so a
wrong parameter type fails at once with a message naming the parameter and what is allowed.
"""

from __future__ import annotations

import re
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Mapping

__all__ = ["check_parameters", "check_notebook_parameters", "run_notebook", "run_report", "plan_report", "notebook_dir",
           "offline_html", "save_numbers", "summary_paragraph", "write_index", "NOTEBOOKS", "PHASES", "PRESETS"]

NOTEBOOKS = {"tour": "00_tour.ipynb", "tradeoffs": "01_tradeoffs.ipynb", "bounds": "02_lower_bounds.ipynb",
             "adaptive": "03_adaptive_training.ipynb", "vtrust": "04_vtrust.ipynb",
             "guidelines": "05_guidelines.ipynb"}
#: The phase notebooks in the order ``trustkit report all`` runs them (guidelines read the others' results).
PHASES = tuple(NOTEBOOKS)
TITLES = {"tour": "Tour: what trust costs at a fixed budget", "tradeoffs": "Trade-offs: what each constraint costs",
          "bounds": "Lower bounds: how many steps a fairness gap needs", "adaptive": "Adaptive training under hard budgets",
          "vtrust": "VTruST: a better training subset", "guidelines": "Guidelines generated from the measurements"}
#: Parameters of each preset, per notebook (``-p`` values override them).
PRESETS = {
    "quick": {name: {"quick": True} for name in NOTEBOOKS},
    "full": {
        "tour": {"quick": False, "seeds": [0, 1, 2, 3, 4], "time_budget_s": 10.0, "corruption_examples": 2000,
                 "datasets": ["adult", "compas", "german", "digits", "fashion_mnist"]},
        # every comparison that feeds a guideline or a claim: 8 seeds, as in the quick preset
        # two worker processes of one torch thread each: measured 1.8x the sequential sweep on 2 cores
        "tradeoffs": {"quick": False, "seeds": list(range(8)), "workers": 2},
        "bounds": {"quick": False, "T_grid": [8, 32, 128, 512, 2048, 4096], "seeds": [0, 1, 2, 3, 4]},
        "adaptive": {"quick": False, "regimes": ["low", "medium", "high"], "seeds": list(range(8)), "bandit_episodes": 4,
                     "schedulers": ["erm", "static", "periodic", "pgd_at", "fgsm_rs", "dynamic", "efficienttrust",
                                    "causal_frozen", "causal_off", "oracle", "atats_rule", "atats_pid", "atats_bandit",
                                    "fairbatch", "dual", "expgrad"]},
        "vtrust": {"quick": False, "seeds": list(range(8)), "lams": [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0],
                   "fractions": [0.1, 0.3, 0.5, 0.7, 0.9], "fraction_seeds": 0},
        "guidelines": {"quick": False},
    },
}


def _type_ok(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, Real) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if isinstance(kind, list):  # list of an element type
        return isinstance(value, (list, tuple)) and all(_type_ok(v, kind[0]) for v in value)
    if isinstance(kind, tuple):  # one of several types, e.g. (str, None)
        return any(value is None if k is None else _type_ok(value, k) for k in kind)
    raise TypeError(f"unsupported parameter spec {kind!r}")


def _name(kind) -> str:
    if isinstance(kind, list):
        return f"list of {_name(kind[0])}"
    if isinstance(kind, tuple):
        return " or ".join("None" if k is None else _name(k) for k in kind)
    return kind.__name__


def check_parameters(values: Mapping[str, Any], spec: Mapping[str, Any], *, choices: Mapping[str, Any] | None = None) -> None:
    """Check notebook parameters against a spec ``{name: type}``; raise naming the parameter.

    Types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``[elem_type]`` for lists, and
    tuples for alternatives (``(str, None)``). ``choices`` restricts values (or list elements).

    >>> check_parameters({"quick": True, "seeds": [0, 1]}, {"quick": bool, "seeds": [int]})
    >>> check_parameters({"quick": "yes"}, {"quick": bool})
    Traceback (most recent call last):
    ...
    TypeError: notebook parameter 'quick' must be bool; got 'yes' (str)
    """
    for name, kind in spec.items():
        if name not in values:
            raise ValueError(f"notebook parameter {name!r} is missing")
        v = values[name]
        if not _type_ok(v, kind):
            raise TypeError(f"notebook parameter {name!r} must be {_name(kind)}; got {v!r} ({type(v).__name__})")
    for name, allowed in (choices or {}).items():
        v = values[name]
        items = v if isinstance(v, (list, tuple)) else [v]
        bad = [x for x in items if x not in allowed]
        if bad:
            raise ValueError(f"notebook parameter {name!r} has {bad}; allowed: {list(allowed)}")


_ANNOTATIONS = {"bool": bool, "int": int, "float": float, "str": str, "list[int]": [int], "list[str]": [str],
                "list[float]": [float], "Optional[str]": (str, None), "Optional[int]": (int, None),
                "Optional[float]": (float, None)}


def check_notebook_parameters(path: str | Path, parameters: Mapping[str, Any]) -> None:
    """Refuse, before the notebook runs, a parameter it does not declare or a value of the wrong type.

    The declared names and types are read from the notebook's ``parameters`` cell (papermill's
    inspection of its annotated assignments: ``seeds: list[int] = [0, 1]``).

    >>> check_notebook_parameters(notebook_dir() / NOTEBOOKS["tour"], {"seed": [0]})
    Traceback (most recent call last):
    ...
    ValueError: notebook 00_tour.ipynb has no parameter 'seed'. Did you mean 'seeds'? Its parameters: corruption_examples, csv_label, csv_path, csv_positive_label, csv_sensitive, datasets, epochs, label_noise, out_dir, quick, seeds, static_charts, time_budget_s
    """
    import difflib

    import papermill as pm

    path = Path(path)
    declared = pm.inspect_notebook(str(path))
    for name, value in parameters.items():
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"notebook {path.name} has no parameter {name!r}.{hint} Its parameters: "
                             f"{', '.join(sorted(declared))}")
        kind = _ANNOTATIONS.get(declared[name].get("inferred_type_name") or "")
        if kind is not None and not _type_ok(value, kind):
            raise TypeError(f"notebook parameter {name!r} must be {_name(kind)}; got {value!r} ({type(value).__name__})")


_EXTERNAL_SCRIPT = re.compile(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', re.I)
# nbconvert's loader of the ipywidgets HTML manager (from unpkg): widgets need a live kernel anyway
_WIDGET_LOADER = re.compile(r"<script>\s*\(function\(\) \{\s*function addWidgetsRenderer\(\).*?</script>", re.S)
_ALTAIR_LOAD = re.compile(r'maybeLoadScript\("([a-z-]+)", "([^"]+)"\)')


def offline_html(html: str) -> str:
    """Make an exported notebook page render without any network.

    Scripts fetched from a CDN are removed: require.js, MathJax (TeX in markdown then shows as
    written) and the ipywidgets loader (widget panels need a running kernel and stay empty). If
    the page holds Altair charts, the Vega, Vega-Lite and Vega-Embed libraries that vl-convert
    ships are inlined **once** in the page's head (about 0.9 MB), and Altair's loader is told they
    are there (``VEGA_DEBUG``), so every chart draws from the inline copy instead of fetching
    ``cdn.jsdelivr.net``.

    >>> page = '<html><head></head><body><script src="https://cdn.x/require.js"></script></body></html>'
    >>> offline_html(page)
    '<html><head></head><body></body></html>'
    """
    import json

    html = _WIDGET_LOADER.sub("", _EXTERNAL_SCRIPT.sub("", html))
    wanted = dict(_ALTAIR_LOAD.findall(html))
    if wanted:
        import vl_convert

        bundle = vl_convert.javascript_bundle().replace("</script", "<\\/script")
        debug = {f"{lib.replace('-', '')}_version": version for lib, version in wanted.items()}
        head = (f"<script>/* Vega {vl_convert.get_vega_version()}, Vega-Embed {vl_convert.get_vega_embed_version()}, "
                f"Vega-Lite, inlined by trustkit for offline reading */\n{bundle}</script>\n"
                f"<script>var VEGA_DEBUG = {json.dumps(debug)};</script>\n")
        if "</head>" not in html:
            raise ValueError("offline_html needs a page with a </head> to put the chart libraries in")
        html = html.replace("</head>", head + "</head>", 1)
    return html


def notebook_dir() -> Path:
    """The repository's ``notebooks/`` folder (notebooks are not installed with the package)."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    if not here.is_dir():
        raise FileNotFoundError(f"notebooks folder not found at {here}; run trustkit from a checkout of the repository")
    return here


def run_notebook(
    notebook: str | Path,
    *,
    out_dir: str | Path = "reports",
    parameters: Mapping[str, Any] | None = None,
    html: bool = True,
    kernel: str = "python3",
    progress: bool = True,
    show_code: bool = False,
) -> dict[str, Path]:
    """Execute a notebook with papermill and (optionally) export it to HTML.

    ``notebook`` is a path or a short name from :data:`NOTEBOOKS` (``"tour"``). Parameters the
    notebook does not declare, or of the wrong type, are refused before it runs
    (:func:`check_notebook_parameters`). The kernel runs *in* ``out_dir`` and the notebook's
    ``out_dir`` is ``"."`` (unless given), so every path it prints is relative to the report
    folder, never a path of the machine that ran it. The HTML is for readers: code cells and
    prompts are hidden unless ``show_code``, and it renders without network
    (:func:`offline_html`). Returns the paths of the executed notebook and the HTML file under
    ``out_dir``.
    """
    import papermill as pm

    path = Path(notebook)
    if str(notebook) in NOTEBOOKS:
        path = notebook_dir() / NOTEBOOKS[str(notebook)]
    if not path.is_file():
        raise FileNotFoundError(f"notebook {str(notebook)!r} not found; short names: {sorted(NOTEBOOKS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / path.name
    params = dict(parameters or {})
    check_notebook_parameters(path, params)
    params.setdefault("out_dir", ".")
    pm.execute_notebook(str(path.resolve()), str(executed), parameters=params, kernel_name=kernel,
                        progress_bar=progress, cwd=str(out_dir))
    out = {"notebook": executed}
    if html:
        out["html"] = _export_html(executed, show_code=show_code)
    return out


# ----------------------------------------------------------------------------------------------
# Key numbers: each notebook saves the figures its summary quotes; the index renders them.


def _plain(value: Any, where: str) -> Any:
    """A JSON-safe copy of ``value``: numpy scalars become Python ones, NaN and inf become None."""
    import math

    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"key number {where} must be a number, string, bool, None, list or mapping; got {type(value).__name__}")


def save_numbers(numbers: Mapping[str, Any], out_dir: str | Path) -> None:
    """Add ``numbers`` to ``out_dir/numbers.json`` (the key numbers of a report page).

    Keys already in the file are replaced, the others kept, so a notebook may save its numbers
    section by section. Numpy scalars are stored as Python numbers and NaN as ``null``.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> save_numbers({"runs": 4}, d)
    >>> save_numbers({"accuracy": float("nan")}, d)
    >>> import json; json.loads((Path(d) / "numbers.json").read_text())
    {'runs': 4, 'accuracy': None}
    """
    import json

    if not isinstance(numbers, Mapping):
        raise TypeError(f"numbers must be a mapping of name to value; got {type(numbers).__name__}")
    path = Path(out_dir) / "numbers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(_plain(dict(numbers), "numbers"))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=1), encoding="utf-8")
    tmp.replace(path)


def _fmt(x, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _p(x) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def _summary_tour(n: Mapping) -> str:
    parts = [f"{n['runs']} ERM runs on {', '.join(n['datasets'])} ({n['seeds']} seeds each, "
             f"{_fmt(n['time_budget_s'], 'g')} s of training per run)."]
    for t in n.get("tasks", []):
        bits = [f"accuracy {_fmt(t.get('accuracy'))}"]
        if t.get("dp_gap") is not None:
            bits.append(f"DP gap {_fmt(t['dp_gap'])}")
        if t.get("robust_accuracy") is not None:
            bits.append(f"{t.get('robust_metric', 'robust')} accuracy {_fmt(t['robust_accuracy'])}")
        parts.append(f"{t['task']}: " + ", ".join(bits) + ".")
    return " ".join(parts)


def _verdict_counts(counts: Mapping[str, int]) -> str:
    order = ["changed", "significant", "recommended", "supported", "no change", "no method beat ERM", "contradicted",
             "not significant", "inconclusive", "not tested", "did not train"]
    items = sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    return ", ".join(f"{n} {v}" for v, n in items if n)


def _summary_tradeoffs(n: Mapping) -> str:
    text = (f"{n['done']} of {n['total']} sweep cells ran ({n['failed']} failed) on {', '.join(n['datasets'])}, "
            f"{n['seeds']} seeds each. Of {n['effects']} constraint effects: {_verdict_counts(n['verdicts'])} "
            f"({n['family']}).")
    if n.get("untrained"):
        text += f" {n['untrained']} run(s) did not train and were left out of every effect."
    for metric, top in (n.get("largest_effects") or {}).items():
        text += (f" Largest change of {metric}: {top['diff']:+.3f} ± {_fmt(top['std'])} under {top['setting']} "
                 f"({top['mitigation']}, {top['dataset']}; q = {_p(top['q_value'])}, {top['n']} seeds).")
    return text


def _summary_bounds(n: Mapping) -> str:
    return (f"{n['checks_passed']} of {n['checks']} symbolic checks of the theorems passed; in simulation the certified "
            f"gap lay inside the admissible region at every step budget: {'yes' if n['inside_region'] else 'no'}. "
            f"On {n['dataset']} the slope of log DP gap on log T was {_fmt(n['slope'])} "
            f"[{_fmt(n['slope_low'])}, {_fmt(n['slope_high'])}] (the bound's rate is −0.5; {n['runs']} runs).")


def _summary_adaptive(n: Mapping) -> str:
    text = f"On {n['dataset']}, the reference full run took {_fmt(n['reference_s'], '.2f')} s; {n['runs']} runs in all."
    if n.get("untrained"):
        text += f" {n['untrained']} run(s) did not train (kept out of the tests)."
    if n.get("family"):
        text += f" Against the best static baseline: {_verdict_counts(n['verdicts'])} ({n['family']})."
    for c in n.get("claims", []):
        text += f" Claim, {c['setting']}: {c['verdict']}."
    return text


def _summary_vtrust(n: Mapping) -> str:
    text = (f"On {n['dataset']} at a {_fmt(n['fraction'], 'g')} subset over {n['seeds']} seeds, against whole data: "
            f"{_verdict_counts(n['verdicts'])} ({n['family']}).")
    if n.get("claim"):
        text += f" VTruST's Table-1 claim ({n['claim']['lam']}): {n['claim']['verdict']}."
    return text


def _summary_guidelines(n: Mapping) -> str:
    return (f"{n['rows']} guideline rows from {', '.join(n['sources']) or 'no'} results: {_verdict_counts(n['verdicts'])}. "
            f"Claims: {_verdict_counts(n['claim_verdicts']) or 'none measured'}.")


_SUMMARIES = {"tour": _summary_tour, "tradeoffs": _summary_tradeoffs, "bounds": _summary_bounds,
              "adaptive": _summary_adaptive, "vtrust": _summary_vtrust, "guidelines": _summary_guidelines}


def summary_paragraph(name: str, numbers: Mapping[str, Any]) -> str:
    """The index's paragraph for notebook ``name``, every figure in it taken from ``numbers``.

    Numbers a notebook did not save are listed as they are rather than guessed.

    >>> summary_paragraph("bounds", {"checks": 6, "checks_passed": 6, "inside_region": True, "dataset": "compas",
    ...                              "slope": -0.41, "slope_low": -0.6, "slope_high": -0.22, "runs": 12})[:52]
    '6 of 6 symbolic checks of the theorems passed; in si'
    """
    fn = _SUMMARIES.get(name)
    if fn is not None:
        try:
            return fn(numbers)
        except (KeyError, TypeError, ValueError):
            pass
    plain = {k: v for k, v in numbers.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return "Key numbers: " + "; ".join(f"{k} = {v}" for k, v in plain.items()) + "." if plain else "No key numbers saved."


# ----------------------------------------------------------------------------------------------
# The report of every phase: plan (all checks), run each notebook, index.

_DATASET_CHOICES = {"tour": ("adult", "compas", "german", "digits", "fashion_mnist", "mnist", "cifar10"),
                    "tradeoffs": ("adult", "compas", "german"), "bounds": ("adult", "compas", "german"),
                    "adaptive": ("adult", "compas", "german", "digits", "fashion_mnist"),
                    "vtrust": ("adult", "compas", "german"), "guidelines": ()}


def plan_report(names=("all",), *, preset: str = "quick", dataset: str | None = None,
                parameters: Mapping[str, Any] | None = None, out_dir: str | Path = "reports") -> list[dict]:
    """Check everything a report run needs and return, per notebook, its path, folder and parameters.

    ``names`` are short names from :data:`NOTEBOOKS` or ``"all"`` (every phase, in :data:`PHASES`
    order). ``parameters`` apply to every notebook that declares them; ``"adaptive.seeds"`` to one
    notebook only. ``dataset`` sets ``dataset`` (or ``datasets``) of every notebook that takes one.
    Everything is refused here, before any notebook runs: an unknown notebook or preset, a
    parameter no notebook in the report declares, a value of the wrong type, a dataset a notebook
    cannot use.

    >>> [p["name"] for p in plan_report(["vtrust", "tour"], parameters={"seeds": [0]})]
    ['tour', 'vtrust']
    >>> plan_report(["vtrust"], parameters={"seed": [0]})
    Traceback (most recent call last):
    ...
    ValueError: no notebook in this report declares parameter 'seed' (did you mean 'seeds'?); vtrust: alpha, aug_factor, dataset, error_threshold, fraction, fraction_seeds, fractions, lam, lams, noise_kind, noise_methods, noise_rate, quick, robust_corruptions, robustness, seeds, static_charts, value
    """
    import difflib

    import papermill as pm

    if isinstance(names, str):
        names = [names]
    names = list(names) or ["all"]
    unknown = [n for n in names if n != "all" and n not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook {unknown[0]!r}; allowed: all, {', '.join(NOTEBOOKS)}")
    wanted = set(PHASES) if "all" in names else set(names)
    chosen = [n for n in PHASES if n in wanted]
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    out_dir = Path(out_dir)
    declared = {n: pm.inspect_notebook(str(notebook_dir() / NOTEBOOKS[n])) for n in chosen}
    params = {n: dict(PRESETS[preset].get(n, {})) for n in chosen}
    if dataset is not None:
        for n in chosen:
            key = "dataset" if "dataset" in declared[n] else ("datasets" if "datasets" in declared[n] else None)
            if key is None:
                continue
            if dataset not in _DATASET_CHOICES[n]:
                raise ValueError(f"dataset {dataset!r} does not fit notebook {n} ({NOTEBOOKS[n]}), which takes "
                                 f"{', '.join(_DATASET_CHOICES[n])}; name the notebooks to run instead of all")
            params[n][key] = dataset if key == "dataset" else [dataset]
    for key, value in (parameters or {}).items():
        target, _, pname = key.rpartition(".")
        if target and target not in chosen:
            raise ValueError(f"parameter {key!r} names notebook {target!r}, which is not in this report ({', '.join(chosen)})")
        targets = [target] if target else [n for n in chosen if pname in declared[n]]
        if not targets or (target and pname not in declared[target]):
            every = sorted({p for n in (targets or chosen) for p in declared[n] if p not in ("out_dir", "reports_dir")})
            close = difflib.get_close_matches(pname, every, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = "; ".join(f"{n}: {', '.join(sorted(p for p in declared[n] if p not in ('out_dir', 'reports_dir')))}"
                              for n in (targets or chosen))
            raise ValueError(f"no notebook in this report declares parameter {pname!r}{hint}; {where}")
        if pname in ("out_dir", "reports_dir"):
            raise ValueError(f"parameter {pname!r} is set by the report (use --out DIR)")
        for n in targets:
            params[n][pname] = value
    plan = []
    for n in chosen:
        folder = out_dir / n
        if "reports_dir" in declared[n]:
            params[n]["reports_dir"] = ".."  # the kernel runs in out_dir/NAME: its parent holds every phase's folder
        check_notebook_parameters(notebook_dir() / NOTEBOOKS[n], params[n])
        plan.append({"name": n, "notebook": notebook_dir() / NOTEBOOKS[n], "out_dir": folder, "parameters": params[n]})
    return plan


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:600] + (" …" if len(text) > 600 else "")


def _error_of(exc: BaseException) -> str:
    """The useful line of a failure: papermill's error names the cell's exception and message."""
    ename = getattr(exc, "ename", None)
    if ename:
        return _one_line(f"{ename}: {getattr(exc, 'evalue', '')}")
    return _one_line(f"{type(exc).__name__}: {exc}")


def _figures(folder: Path) -> list[str]:
    figs = sorted((folder / "figures").glob("*.png")) if (folder / "figures").is_dir() else []
    return [str(p.relative_to(folder)) for p in figs]


def run_report(names=("all",), *, preset: str = "quick", dataset: str | None = None,
               parameters: Mapping[str, Any] | None = None, out_dir: str | Path = "reports",
               show_code: bool = False, progress: bool = True, kernel: str = "python3") -> list[dict]:
    """Run the phase notebooks as one report: per notebook a folder, and an ``index.html`` over them.

    Each notebook runs through :func:`run_notebook` into ``out_dir/NAME/`` (the executed .ipynb,
    the offline HTML page, ``figures/`` with PNG and SVG charts, ``numbers.json`` with its key
    numbers). Everything is checked first (:func:`plan_report`). A notebook that fails does not
    stop the others: the index marks it failed, with the error. The index is rewritten after every
    notebook, so a killed run keeps every finished page. Returns one entry per notebook: name,
    status (``"ok"`` or ``"failed"``), error, seconds and the paths written.
    """
    import json
    import time

    from tqdm.auto import tqdm

    from .config import set_threads

    plan = plan_report(names, preset=preset, dataset=dataset, parameters=parameters, out_dir=out_dir)
    set_threads()  # one kernel at a time: all the cores (or $TRUSTKIT_THREADS); the kernels inherit it
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [{"name": p["name"], "status": "pending", "error": None, "seconds": None, "parameters": p["parameters"]}
               for p in plan]
    earlier = _earlier_entries(out_dir, {p["name"] for p in plan})

    def everything():  # this run's notebooks and, kept from an earlier run into the same folder, the others
        order = {n: i for i, n in enumerate(PHASES)}
        return sorted(earlier + results, key=lambda e: order.get(e["name"], len(order)))

    bar = tqdm(plan, desc="report", unit="notebook", disable=not progress)
    for entry, p in zip(results, bar):
        bar.set_postfix_str(p["name"])
        folder = p["out_dir"]
        _clear_page(folder, p["notebook"].name)  # a failed run must not show an earlier run's page, figures or numbers
        start = time.perf_counter()
        try:
            paths = run_notebook(p["notebook"], out_dir=folder, parameters=p["parameters"], progress=progress,
                                 show_code=show_code, kernel=kernel)
            entry["status"] = "ok"
            entry["paths"] = {k: str(v.relative_to(out_dir)) for k, v in paths.items()}
        except Exception as exc:  # one failed notebook must not lose the others' pages
            entry["status"], entry["error"] = "failed", _error_of(exc)
            executed = folder / p["notebook"].name
            entry["paths"] = {"notebook": str(executed.relative_to(out_dir))} if executed.is_file() else {}
            if executed.is_file() and "html" not in entry["paths"]:
                try:  # the partial page helps to see where it stopped
                    entry["paths"]["html"] = str(_export_html(executed, show_code=show_code).relative_to(out_dir))
                except Exception:
                    pass
        entry["seconds"] = round(time.perf_counter() - start, 1)
        numbers_path = folder / "numbers.json"
        entry["numbers"] = json.loads(numbers_path.read_text()) if numbers_path.is_file() else {}
        entry["figures"] = _figures(folder)
        write_index(everything(), out_dir)
        (out_dir / "report.json").write_text(json.dumps(_plain(everything(), "report"), indent=1), encoding="utf-8")
    return results


def _clear_page(folder: Path, notebook_name: str) -> None:
    """Remove what a notebook's earlier run left in ``folder`` for readers — its executed notebook,
    page, figures and key numbers — so that the index never shows them beside this run's status.
    Result stores and tables stay: a finished run is reused, never lost."""
    import shutil

    if not folder.is_dir():
        return
    for name in (notebook_name, Path(notebook_name).with_suffix(".html").name, "numbers.json"):
        if (folder / name).is_file():
            (folder / name).unlink()
    if (folder / "figures").is_dir():
        shutil.rmtree(folder / "figures")


def _earlier_entries(out_dir: Path, running: set) -> list[dict]:
    """Entries of an earlier report into ``out_dir`` for notebooks this run does not repeat (their
    pages are still there), so running one notebook again keeps the others in the index."""
    import json

    path = out_dir / "report.json"
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except ValueError:
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("name") in NOTEBOOKS and e["name"] not in running
            and (out_dir / e["name"]).is_dir()]


def _export_html(executed: Path, *, show_code: bool) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=not show_code, exclude_input_prompt=not show_code,
                            exclude_output_prompt=not show_code)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    path = executed.with_suffix(".html")
    path.write_text(offline_html(body), encoding="utf-8")
    return path


_INDEX_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222;line-height:1.45}h1{font-size:1.6rem}section{border-top:1px solid #ddd;padding:.8rem 0}
h2{font-size:1.2rem;margin:.2rem 0}.status{font-size:.8rem;padding:.1rem .45rem;border-radius:.3rem;margin-left:.5rem}
.ok{background:#e3f4e1;color:#1d5c1a}.failed{background:#fbe3e3;color:#8a1414}.pending{background:#eee;color:#555}
.error{font-family:monospace;background:#fff4f4;padding:.4rem;white-space:pre-wrap}.links a{margin-right:.8rem}
.thumbs img{max-height:140px;margin:.3rem .4rem 0 0;border:1px solid #eee}.meta{color:#666;font-size:.85rem}"""


def write_index(results: list[Mapping], out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html``: one section per notebook with its status, the summary paragraph
    (:func:`summary_paragraph` of its saved numbers), links to its files and thumbnails of its
    charts. Self-contained: no script, no font or style fetched from anywhere."""
    import datetime
    import html as h

    out_dir = Path(out_dir)
    done = sum(r["status"] == "ok" for r in results)
    failed = sum(r["status"] == "failed" for r in results)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>trustkit report</title>"
             f"<style>{_INDEX_CSS}</style></head><body><h1>trustkit report</h1>"
             f"<p class='meta'>{done} of {len(results)} notebooks ran, {failed} failed; written "
             f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}. Every page opens offline.</p>"]
    for r in results:
        name = r["name"]
        parts.append(f"<section id='{h.escape(name)}'><h2>{h.escape(TITLES.get(name, name))}"
                     f"<span class='status {r['status']}'>{r['status']}</span></h2>")
        if r.get("seconds") is not None:
            parts.append(f"<p class='meta'>{h.escape(NOTEBOOKS.get(name, name))} · {r['seconds']:.0f} s</p>")
        if r["status"] == "failed":
            parts.append(f"<p class='error'>{h.escape(r.get('error') or 'failed')}</p>")
        if r.get("numbers"):
            parts.append(f"<p class='summary'>{h.escape(summary_paragraph(name, r['numbers']))}</p>")
        links = [(label, r.get("paths", {}).get(key)) for key, label in (("html", "report page"), ("notebook", "notebook"))]
        if r.get("numbers"):
            links.append(("key numbers (JSON)", f"{name}/numbers.json"))
        parts.append("<p class='links'>" + "".join(f"<a href='{h.escape(href)}'>{label}</a>" for label, href in links if href)
                     + "</p>")
        if r.get("figures"):
            parts.append("<div class='thumbs'>" + "".join(
                f"<a href='{h.escape(name)}/{h.escape(f)}'><img src='{h.escape(name)}/{h.escape(f)}' alt='{h.escape(Path(f).stem)}'></a>"
                for f in r["figures"]) + "</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
