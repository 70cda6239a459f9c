"""Interactive panels for the notebooks (ipywidgets): move a control, see the numbers and the chart.

Every panel is a thin widget over a plain function that returns the numbers it shows, so the
same numbers can be computed, tested and quoted without a browser:

=====================  ====================================  ===========================================
panel                  controls                              numbers from
=====================  ====================================  ===========================================
:func:`tradeoff_panel`  constraint type and level,           :func:`tradeoff_point` (a finished sweep:
                       mitigation                            instant)
:func:`adaptive_panel`  λ_f, λ_r, time budget, attack        :func:`adaptive_point` (trains the quick
                                                             model: about a second on tables)
:func:`vtrust_panel`    VTruST's λ and subset fraction       :func:`vtrust_point` (selects and retrains;
                                                             cached in a result store)
:func:`bounds_panel`    δ, η, σ of the lower bound           :func:`bounds_point` (closed form)
=====================  ====================================  ===========================================

The numbers are shown in an HTML table whose cells carry ``data-metric`` and ``data-field``
attributes, so a browser test can read them. A panel keeps the numbers it shows last in
``panel.numbers``. Widgets need a live kernel (Jupyter or Voila); in an exported HTML report the
notebook prints the numbers of the default setting instead.

>>> import pandas as pd
>>> rows = [{"dataset": "d", "model": "m", "mitigation": "erm", "seed": s, "constraint": c, "level": lv, "accuracy": a}
...         for s in (0, 1) for c, lv, a in (("none", 1.0, 0.8 + s / 100), ("time", 0.5, 0.7 + s / 50))]
>>> point = tradeoff_point(pd.DataFrame(rows), constraint="time", level=0.5, metrics=["accuracy"])
>>> round(point["accuracy"]["reference"], 3), round(point["accuracy"]["value"], 3), round(point["accuracy"]["diff"], 3)
(0.805, 0.71, -0.095)
"""

from __future__ import annotations

import html as _html
import math
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

__all__ = ["Panel", "tradeoff_point", "tradeoff_panel", "adaptive_point", "adaptive_panel", "vtrust_point",
           "vtrust_panel", "bounds_point", "bounds_panel", "numbers_table"]

_FIELDS = ("reference", "value", "diff", "std", "p_value", "q_value", "verdict", "n")


def _f(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return str(x)
    return f"{x:.{digits}f}" if isinstance(x, float) else _html.escape(str(x))


def numbers_table(numbers: Mapping[str, Any], *, digits: int = 4) -> str:
    """The HTML table a panel shows: one row per metric, a cell per field, each cell marked with
    ``data-metric`` and ``data-field`` (its value printed with ``digits`` decimals).

    ``numbers`` maps a metric to a value or to a mapping of fields (``reference``, ``value``,
    ``diff``, …).

    >>> numbers_table({"accuracy": 0.81234}, digits=3)
    '<table class="tk-numbers"><tr><th>metric</th><th>value</th></tr><tr><td>accuracy</td><td data-metric="accuracy" data-field="value">0.812</td></tr></table>'
    """
    nested = {k: v for k, v in numbers.items() if isinstance(v, Mapping)}
    flat = {k: v for k, v in numbers.items() if not isinstance(v, Mapping)}
    parts = ['<table class="tk-numbers">']
    if nested:
        fields = [f for f in _FIELDS if any(f in v for v in nested.values())]
        parts.append("<tr><th>metric</th>" + "".join(f"<th>{f.replace('_', ' ')}</th>" for f in fields) + "</tr>")
        for metric, v in nested.items():
            parts.append(f"<tr><td>{_html.escape(metric)}</td>" + "".join(
                f'<td data-metric="{_html.escape(metric)}" data-field="{f}">{_f(v.get(f), digits)}</td>' for f in fields)
                + "</tr>")
    if flat:
        parts.append("<tr><th>metric</th><th>value</th></tr>")
        for metric, v in flat.items():
            parts.append(f'<tr><td>{_html.escape(metric)}</td><td data-metric="{_html.escape(metric)}" data-field="value">'
                         f"{_f(v, digits)}</td></tr>")
    return "".join(parts) + "</table>"


def _svg(chart) -> str:
    """The chart drawn as SVG markup by vl-convert: it shows the same in Jupyter, Voila and offline
    (no JavaScript library fetched from a CDN), and redraws in a fraction of a second."""
    import vl_convert

    return f'<div class="tk-chart">{vl_convert.vegalite_to_svg(chart.to_dict())}</div>'


class Panel:
    """Controls, a numbers table and a chart area, redrawn by ``refresh()``.

    ``compute(**values)`` returns ``(numbers, chart_or_None, message)`` for the controls' current
    values. With ``live=True`` every control change redraws; otherwise a *run* button does (for
    panels that train a model). Display the panel as the last expression of a cell, or with
    ``IPython.display.display(panel)``.
    """

    def __init__(self, *, title: str, controls: Mapping[str, Any], compute: Callable[..., tuple], live: bool,
                 digits: int = 4):
        import ipywidgets as w

        self.controls = dict(controls)
        self._compute = compute
        self.digits = digits
        self.numbers: dict = {}
        self.message = ""
        self.table = w.HTML(layout=w.Layout(min_height="2em"))
        self.status = w.HTML()
        # the chart is SVG markup in an HTML widget: no Output widget capturing displays, whose
        # messages a headless executor (papermill, Voila) has to route
        self.chart = w.HTML()
        rows = [w.HTML(f"<b>{_html.escape(title)}</b>"), w.HBox(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap"))]
        if live:
            for c in self.controls.values():
                c.observe(lambda _change: self.refresh(), names="value")
        else:
            self.button = w.Button(description="run", button_style="primary")
            self.button.on_click(lambda _b: self.refresh())
            rows.append(self.button)
        self.widget = w.VBox([*rows, self.status, self.table, self.chart])

    def values(self) -> dict:
        """The controls' current values."""
        return {k: c.value for k, c in self.controls.items()}

    def refresh(self) -> dict:
        """Recompute for the current values, redraw the table and chart; returns the numbers."""
        self.status.value = "<i>computing…</i>"
        try:
            numbers, chart, message = self._compute(**self.values())
        except (ValueError, TypeError) as exc:  # a setting the function refuses: say why, and show no numbers
            # (the previous setting's numbers under the new controls would be read as this setting's)
            self.numbers, self.message = {}, str(exc)
            self.status.value = f'<span style="color:#a00">{_html.escape(str(exc))}</span>'
            self.table.value = ""
            self.chart.value = ""
            return {}
        self.numbers, self.message = numbers, message
        self.status.value = _html.escape(message)
        self.table.value = numbers_table(numbers, digits=self.digits)
        self.chart.value = "" if chart is None else _svg(chart)
        return numbers

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------------
# Trade-offs: a finished sweep, looked up


def _levels(frame: pd.DataFrame, constraint: str) -> list:
    lv = frame.loc[frame["constraint"] == constraint, "level"].astype(str).unique().tolist()
    try:
        return sorted(lv, key=float, reverse=True)  # loosest first: the slider tightens to the right
    except ValueError:  # quantisation schemes: int8 before int4
        return sorted(lv, reverse=True)


def tradeoff_point(frame: pd.DataFrame, *, constraint: str, level, metrics: Sequence[str] = ("accuracy", "eo_gap", "robust_accuracy"),
                   mitigation: str | None = None, dataset: str | None = None, model: str | None = None) -> dict:
    """What one constraint setting of a sweep costs: per metric, the reference's mean, the constrained
    mean, their paired difference (± std over seeds), its p-value, its q-value and verdict, and the
    number of seeds.

    ``frame`` is a sweep's frame (:func:`trustkit.experiments.sweep_frame`). ``mitigation``,
    ``dataset`` and ``model`` narrow it to one value each; left out, the frame must hold one.
    Values are :func:`trustkit.experiments.sweep_effects`'s, computed over the whole ``frame`` as
    one family (every setting, mitigation and metric given), so the panel and notebook 01 agree
    on each q-value and verdict.
    """
    from .experiments import sweep_effects

    need = ["constraint", "level", "seed", "dataset", "model", "mitigation"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"tradeoff_point needs a sweep frame with columns {need}; missing {missing}")
    d = frame
    metrics = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
    family = sweep_effects(frame, metrics=metrics)
    for col, val in (("mitigation", mitigation), ("dataset", dataset), ("model", model)):
        options = sorted(d[col].astype(str).unique())
        if val is None:
            if len(options) > 1:
                raise ValueError(f"the sweep has several {col} values {options}: pass {col}=")
            continue
        if str(val) not in options:
            raise ValueError(f"{col} {val!r} is not in the sweep; allowed: {options}")
        d = d[d[col].astype(str) == str(val)]
    kinds = sorted(set(d["constraint"]) - {"none"})
    if constraint not in kinds:
        raise ValueError(f"constraint {constraint!r} is not in the sweep; allowed: {kinds}")
    levels = _levels(d, constraint)
    if str(level) not in levels:
        raise ValueError(f"level {level!r} of {constraint} is not in the sweep; allowed: {levels}")
    e = family[(family["constraint"] == constraint) & (family["level"].astype(str) == str(level))]
    for col in ("mitigation", "dataset", "model"):
        e = e[e[col].astype(str).isin(set(d[col].astype(str)))]
    out = {}
    for _, r in e.iterrows():
        out[r["metric"]] = {"reference": float(r["reference"]), "value": float(r["value"]), "diff": float(r["diff"]),
                            "std": float(r["std"]), "p_value": float(r["p_value"]), "q_value": float(r["q_value"]),
                            "verdict": str(r["verdict"]), "n": int(r["n"])}
    return out


def tradeoff_panel(frame: pd.DataFrame, *, metrics: Sequence[str] = ("accuracy", "eo_gap", "robust_accuracy"),
                   dataset: str | None = None, model: str | None = None) -> Panel:
    """Pick a constraint type, its level and a mitigation of a finished sweep; see what it costs.

    The table is :func:`tradeoff_point`; the chart is the chosen constraint's curve of the first
    metric (every level, mean and 95% interval), so the setting is seen in its context.
    """
    import ipywidgets as w

    from .plots import constraint_chart

    base = frame
    for col, val in (("dataset", dataset), ("model", model)):
        if val is not None:
            base = base[base[col].astype(str) == str(val)]
    kinds = sorted(set(base["constraint"]) - {"none"})
    if not kinds:
        raise ValueError("the sweep frame has no constrained cells (only references)")
    ctype = w.Dropdown(options=kinds, value=kinds[0], description="constraint")
    levels = _levels(base, kinds[0])
    level = w.SelectionSlider(options=levels, value=levels[0], description="level", continuous_update=False)
    mits = sorted(base["mitigation"].astype(str).unique())
    mitigation = w.Dropdown(options=mits, value=mits[0], description="mitigation")

    def on_type(change):
        opts = _levels(base, change["new"])
        level.options = opts
        level.value = opts[0]

    ctype.observe(on_type, names="value")
    shown = [m for m in metrics if m in base.columns and base[m].notna().any()]
    from .experiments import sweep_effects

    effects = sweep_effects(frame, metrics=shown)
    family_words = effects["family"].iloc[0] if len(effects) else "no tests"

    def compute(constraint, level, mitigation):
        if str(level) not in _levels(base, constraint):  # mid-way through a type change
            raise ValueError("choosing a level")
        numbers = tradeoff_point(frame, constraint=constraint, level=level, metrics=shown, mitigation=mitigation,
                                 dataset=dataset, model=model)
        sub = base[(base["constraint"].isin(["none", constraint])) & (base["mitigation"].astype(str) == mitigation)]
        chart = constraint_chart(sub, metric=shown[0]) if shown else None
        n = max((v["n"] for v in numbers.values()), default=0)
        return numbers, chart, (f"{constraint} at {level} with {mitigation}: change from the unconstrained reference, {n} seeds; "
                                f"q-values and verdicts from {family_words}")

    panel = Panel(title="What a constraint costs", controls={"constraint": ctype, "level": level, "mitigation": mitigation},
                  compute=compute, live=True)
    panel.refresh()
    return panel


# ---------------------------------------------------------------------------------------------
# Adaptive training: one quick run with fixed λ and a time budget


def adaptive_point(dataset: str = "compas", *, lam_fair: float = 1.0, lam_rob: float = 1.0, time_budget_s: float | None = 2.0,
                   attack: str = "pgd", seed: int = 0, quick: bool = True) -> dict:
    """Train the quick model with fixed λ_f, λ_r, an attack and a time budget; its test metrics and cost."""
    from .experiments import interactive_run

    return interactive_run(dataset, lam_fair=lam_fair, lam_rob=lam_rob, time_budget_s=time_budget_s, attack=attack,
                           seed=seed, quick=quick)


def adaptive_panel(dataset: str = "compas", *, frontier: pd.DataFrame | None = None, seed: int = 0, quick: bool = True,
                   budget_s: float = 2.0, fair: bool = True) -> Panel:
    """Set λ_f, λ_r, the time budget and the attack; press *run* to train and place the run on ``frontier``
    (an :func:`trustkit.experiments.adaptive_comparison` frame: the measured methods)."""
    import ipywidgets as w

    from .plots import pareto_chart

    controls = {
        "lam_fair": w.FloatSlider(value=1.0, min=0.0, max=4.0, step=0.25, description="λ_f", disabled=not fair),
        "lam_rob": w.FloatSlider(value=1.0, min=0.0, max=4.0, step=0.25, description="λ_r"),
        "time_budget_s": w.FloatLogSlider(value=max(0.05, budget_s), base=10, min=-1.5, max=1.5, step=0.1,
                                          description="budget (s)"),
        "attack": w.Dropdown(options=["pgd", "fgsm_rs"], value="pgd", description="attack"),
    }

    def compute(lam_fair, lam_rob, time_budget_s, attack):
        row = adaptive_point(dataset, lam_fair=lam_fair if fair else 0.0, lam_rob=lam_rob, time_budget_s=time_budget_s,
                             attack=attack, seed=seed, quick=quick)
        numbers = {k: row[k] for k in ("accuracy", "dp_gap", "robust_accuracy", "time_s") if row.get(k) is not None}
        chart = None
        if frontier is not None and len(frontier):
            y = "dp_gap" if fair and frontier["dp_gap"].notna().any() else "robust_accuracy"
            point = pd.DataFrame([{"time_s": row["time_s"], y: row.get(y), "method": "your run", "regime": "panel", "seed": seed}])
            chart = pareto_chart(pd.concat([frontier, point], ignore_index=True), x="time_s", y=y, minimize_y=y == "dp_gap")
        message = (f"{row['time_s']:.2f} s of {time_budget_s:.2f} s, {row['epochs']} slices, stopped by {row['stopped_by']}")
        return numbers, chart, message

    return Panel(title=f"Adaptive training on {dataset}: fixed λ under a time budget", controls=controls,
                 compute=compute, live=False, digits=3)


# ---------------------------------------------------------------------------------------------
# VTruST: select with λ and a fraction, retrain


def vtrust_point(dataset: str = "compas", *, lam: float = 0.5, fraction: float = 0.6, value: str = "accuracy+fairness",
                 seed: int = 0, select_epochs: int = 5, train_epochs: int = 20, store=None) -> dict:
    """Select ``fraction`` of the training split with VTruST at ``lam``, retrain, and compare with whole
    data on the same seed: error, EO gap, DP gap and positive rate of both."""
    from .experiments import selection_comparison

    r = selection_comparison(dataset, methods=["whole", "vtrust"], fraction=fraction, value=value, lams=[lam],
                             seeds=[seed], store=store, progress=False, select_epochs=select_epochs,
                             train_epochs=train_epochs)
    whole, sel = r[r["method"] == "whole"].iloc[0], r[r["method"] == "vtrust"].iloc[0]
    return {m: {"reference": float(whole[m]), "value": float(sel[m]), "diff": float(sel[m] - whole[m])}
            for m in ("error", "eo_gap", "dp_gap", "positive_rate") if m in r.columns}


def vtrust_panel(dataset: str = "compas", *, lam: float = 0.5, fraction: float = 0.6, value: str = "accuracy+fairness",
                 seed: int = 0, select_epochs: int = 5, train_epochs: int = 20, store=None) -> Panel:
    """Set VTruST's λ and the subset fraction; press *run* to select, retrain and compare with whole data
    (``reference`` in the table). Finished settings are cached in ``store``."""
    import ipywidgets as w

    from .plots import tradeoff_chart

    controls = {"lam": w.FloatSlider(value=lam, min=0.0, max=1.0, step=0.1, description="λ"),
                "fraction": w.FloatSlider(value=fraction, min=0.1, max=0.9, step=0.1, description="fraction")}

    def compute(lam, fraction):
        numbers = vtrust_point(dataset, lam=round(lam, 3), fraction=round(fraction, 3), value=value, seed=seed,
                               select_epochs=select_epochs, train_epochs=train_epochs, store=store)
        pts = pd.DataFrame({"label": ["whole data", f"VTruST λ={lam:.1f}, {fraction:.0%}"], "seed": [seed, seed],
                            "eo_gap": [numbers["eo_gap"]["reference"], numbers["eo_gap"]["value"]],
                            "error": [numbers["error"]["reference"], numbers["error"]["value"]]})
        chart = tradeoff_chart(pts, x="eo_gap", y="error", by="label")
        return numbers, chart, f"seed {seed}: VTruST subset of {fraction:.0%} at λ = {lam:.1f} against whole data"

    return Panel(title=f"VTruST on {dataset}: λ and the subset fraction", controls=controls, compute=compute, live=False)


# ---------------------------------------------------------------------------------------------
# The lower bound: closed form


def bounds_point(delta: float, eta: float, sigma: float) -> dict:
    """The steps at least needed (lower bound) and sufficient (upper bound) to certify a gap ``delta``
    with confidence ``1 - eta`` at noise ``sigma``, and their ratio."""
    from .bounds import lower_bound_steps, upper_bound_steps

    lo, hi = float(lower_bound_steps(delta, eta, sigma)), float(upper_bound_steps(delta, eta, sigma))
    return {"steps_needed": lo, "steps_sufficient": hi, "ratio": hi / lo}


def bounds_panel(*, delta: float = 0.05, eta: float = 0.1, sigma: float = 0.5) -> Panel:
    """Move δ, η and σ; see how many steps a certified fairness gap needs and how many suffice."""
    import ipywidgets as w

    controls = {"delta": w.FloatLogSlider(value=delta, base=10, min=-3, max=-0.4, step=0.05, description="δ"),
                "eta": w.FloatLogSlider(value=eta, base=10, min=-6, max=-0.61, step=0.05, description="η"),
                "sigma": w.FloatSlider(value=sigma, min=0.05, max=2.0, step=0.05, description="σ")}

    def compute(delta, eta, sigma):
        n = bounds_point(delta, eta, sigma)
        return n, None, (f"δ = {delta:.4f}, η = {eta:.2e}, σ = {sigma:.2f}: at least {n['steps_needed']:,.0f} steps are "
                         f"needed; {n['steps_sufficient']:,.0f} suffice (ratio {n['ratio']:.2f})")

    panel = Panel(title="Steps needed to certify a fairness gap", controls=controls, compute=compute, live=True, digits=1)
    panel.refresh()
    return panel
