"""Run notebooks as parameterised reports (papermill) and export them to HTML (nbconvert).

Notebooks call :func:`check_parameters` right after their papermill ``parameters`` cell, so a
wrong parameter type fails at once with a message naming the parameter and what is allowed.
"""

from __future__ import annotations

import re
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Mapping

__all__ = ["check_parameters", "check_notebook_parameters", "run_notebook", "notebook_dir", "offline_html", "NOTEBOOKS"]

NOTEBOOKS = {"tour": "00_tour.ipynb", "tradeoffs": "01_tradeoffs.ipynb", "bounds": "02_lower_bounds.ipynb",
             "adaptive": "03_adaptive_training.ipynb", "vtrust": "04_vtrust.ipynb"}


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
    ValueError: notebook 00_tour.ipynb has no parameter 'seed'. Did you mean 'seeds'? Its parameters: csv_label, csv_path, csv_positive_label, csv_sensitive, datasets, epochs, label_noise, out_dir, quick, seeds, static_charts, time_budget_s
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
    (:func:`check_notebook_parameters`). The HTML is for readers: code cells and prompts are
    hidden unless ``show_code``, and it renders without network (:func:`offline_html`). Returns
    the paths of the executed notebook and the HTML file under ``out_dir``.
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
    params.setdefault("out_dir", str(out_dir.resolve()))
    pm.execute_notebook(str(path), str(executed), parameters=params, kernel_name=kernel,
                        progress_bar=progress, cwd=str(path.parent))
    out = {"notebook": executed}
    if html:
        import nbformat
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(exclude_input=not show_code, exclude_input_prompt=not show_code,
                                exclude_output_prompt=not show_code)
        body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
        body = offline_html(body)
        out["html"] = executed.with_suffix(".html")
        out["html"].write_text(body, encoding="utf-8")
    return out
