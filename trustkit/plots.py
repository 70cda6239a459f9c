"""Altair charts of trustkit results (they read tidy frames; nothing here computes a metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import altair as alt
import pandas as pd

__all__ = ["group_balance_chart", "tradeoff_chart", "robustness_chart", "severity_chart", "save_chart",
           "sweep_chart", "box_chart", "data_map_chart", "image_grid", "pareto_chart", "trajectory_chart",
           "constraint_chart", "frontier_chart", "interaction_chart", "planted_noise_chart"]


def _check(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"chart needs columns {missing}; the frame has {list(df.columns)}")


def group_balance_chart(balance: pd.DataFrame) -> alt.Chart:
    """Bars of each sensitive group's share, with its positive rate as a tooltip, per task."""
    _check(balance, ["task", "attribute", "group", "share", "positive_rate"])
    return (
        alt.Chart(balance)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", title="share of rows", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("group:N", title=None),
            color=alt.Color("positive_rate:Q", title="positive rate", scale=alt.Scale(scheme="blues")),
            row=alt.Row("task:N", title=None),
            tooltip=["task", "attribute", "group", "rows", alt.Tooltip("share:Q", format=".3f"),
                     alt.Tooltip("positive_rate:Q", format=".3f")],
        )
        .properties(width=320, height=50, title="Sensitive groups: share and positive rate")
    )


def tradeoff_chart(results: pd.DataFrame, *, x: str = "dp_gap", y: str = "accuracy", by: str = "dataset") -> alt.LayerChart:
    """Per-seed points, and the mean with ± one standard deviation bars, of ``y`` against ``x``."""
    from .stats import mean_std

    _check(results, [x, y, by])
    data = results.dropna(subset=[x, y])
    s = mean_std(data, by=by, metrics=[x, y]).fillna({f"{x}_std": 0.0, f"{y}_std": 0.0})
    for m in (x, y):
        s[f"{m}_lo"] = s[f"{m}_mean"] - s[f"{m}_std"]
        s[f"{m}_hi"] = s[f"{m}_mean"] + s[f"{m}_std"]
    xt, yt = x.replace("_", " "), y.replace("_", " ")
    points = alt.Chart(data).mark_point(opacity=0.45).encode(
        x=alt.X(f"{x}:Q", title=xt), y=alt.Y(f"{y}:Q", title=yt, scale=alt.Scale(zero=False)), color=f"{by}:N",
        tooltip=[by, "seed", alt.Tooltip(f"{x}:Q", format=".3f"), alt.Tooltip(f"{y}:Q", format=".3f")],
    )
    stats = alt.Chart(s)
    xbar = stats.mark_rule().encode(x=f"{x}_lo:Q", x2=f"{x}_hi:Q", y=f"{y}_mean:Q", color=f"{by}:N")
    ybar = stats.mark_rule().encode(y=f"{y}_lo:Q", y2=f"{y}_hi:Q", x=f"{x}_mean:Q", color=f"{by}:N")
    mean = stats.mark_point(filled=True, size=120).encode(
        x=f"{x}_mean:Q", y=f"{y}_mean:Q", color=f"{by}:N",
        tooltip=[by, "n", alt.Tooltip(f"{x}_mean:Q", format=".3f"), alt.Tooltip(f"{y}_mean:Q", format=".3f")],
    )
    return (points + xbar + ybar + mean).properties(width=380, height=260, title=f"{yt} vs {xt} (mean ± std over seeds)")


def robustness_chart(results: pd.DataFrame, *, metrics: Sequence[str], by: str = "dataset") -> alt.Chart:
    """Grouped bars (mean over seeds, with std error bars) of clean and robust accuracies."""
    present = [m for m in metrics if m in results.columns]
    if not present:
        raise ValueError(f"none of {list(metrics)} is in the results")
    long = results[[by, "seed", *present]].melt(id_vars=[by, "seed"], var_name="metric", value_name="value").dropna()
    base = alt.Chart(long)
    bars = base.mark_bar().encode(
        x=alt.X("metric:N", title=None, sort=present), y=alt.Y("mean(value):Q", title="accuracy"),
        color=alt.Color("metric:N", sort=present), tooltip=["metric", alt.Tooltip("mean(value):Q", format=".3f")],
    )
    err = base.mark_errorbar(extent="stdev").encode(x=alt.X("metric:N", sort=present), y=alt.Y("value:Q", title="accuracy"))
    return (
        (bars + err).properties(width=alt.Step(22), height=180)
        .facet(column=alt.Column(f"{by}:N", title=None))
        .resolve_scale(x="independent")
        .properties(title="Accuracy: clean, under ℓ∞ attacks, under noise or corruption")
    )


def severity_chart(results: pd.DataFrame, *, by: str = "dataset") -> alt.Chart:
    """Mean corruption accuracy against severity (columns ``corruption_acc@s``), one line per dataset."""
    cols = [c for c in results.columns if c.startswith("corruption_acc@")]
    if not cols:
        raise ValueError("the results hold no corruption_acc@<severity> columns (image tasks only)")
    long = results[[by, "seed", *cols]].melt(id_vars=[by, "seed"], var_name="severity", value_name="accuracy").dropna()
    long["severity"] = long["severity"].str.split("@").str[1].astype(int)
    base = alt.Chart(long)
    line = base.mark_line(point=True).encode(x=alt.X("severity:O"), y=alt.Y("mean(accuracy):Q", title="accuracy"), color=f"{by}:N")
    band = base.mark_errorband(extent="stdev").encode(x="severity:O", y="accuracy:Q", color=f"{by}:N")
    return (band + line).properties(width=300, height=200, title="Mean corruption accuracy by severity")


def save_chart(chart, path: str | Path, *, svg: bool = True) -> Path:
    """Save a chart as PNG/SVG/HTML/JSON by extension (PNG and SVG through vl-convert, no browser).

    A ``.png`` path also gets an SVG copy beside it (same stem) unless ``svg=False``: reports ship
    both, the PNG for slides and the SVG for print. Returns the path asked for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(path))
    if svg and path.suffix.lower() == ".png":
        chart.save(str(path.with_suffix(".svg")))
    return path


def sweep_chart(results: pd.DataFrame, *, x: str, y: str, by: str = "label", detail: str | None = None,
                title: str | None = None) -> alt.LayerChart:
    """Mean ± std of ``y`` against ``x`` per ``by`` (e.g. EO gap against the subset fraction, or
    error against EO gap across λ), with lines joining the means in ``x`` order."""
    from .stats import mean_std

    _check(results, [x, y, by])
    keys = [by, x] if detail is None else [by, x, detail]
    s = mean_std(results, by=keys, metrics=[y]).fillna({f"{y}_std": 0.0})
    s["lo"], s["hi"] = s[f"{y}_mean"] - s[f"{y}_std"], s[f"{y}_mean"] + s[f"{y}_std"]
    base = alt.Chart(s)
    enc = dict(x=alt.X(f"{x}:Q", title=x.replace("_", " "), scale=alt.Scale(zero=False)), color=f"{by}:N")
    line = base.mark_line(point=True).encode(y=alt.Y(f"{y}_mean:Q", title=y.replace("_", " "), scale=alt.Scale(zero=False)),
                                             tooltip=keys + [alt.Tooltip(f"{y}_mean:Q", format=".3f"), "n"], **enc)
    band = base.mark_rule().encode(y="lo:Q", y2="hi:Q", **enc)
    return (band + line).properties(width=360, height=240, title=title or f"{y} vs {x} (mean ± std over seeds)")


def box_chart(df: pd.DataFrame, *, value: str, by: str = "method", title: str | None = None) -> alt.LayerChart:
    """Box plots of ``value`` per ``by`` (min, quartiles, median, max computed exactly in pandas)."""
    _check(df, [value, by])
    q = df.groupby(by)[value].describe()[["min", "25%", "50%", "75%", "max"]].reset_index()
    q.columns = [by, "lo", "q1", "median", "q3", "hi"]
    base = alt.Chart(q).encode(x=alt.X(f"{by}:N", title=None), color=f"{by}:N")
    whisker = base.mark_rule().encode(y=alt.Y("lo:Q", title=value.replace("_", " ")), y2="hi:Q")
    box = base.mark_bar(size=28, opacity=0.6).encode(y="q1:Q", y2="q3:Q",
                                                    tooltip=[by] + [alt.Tooltip(f"{c}:Q", format=".3f") for c in ("lo", "q1", "median", "q3", "hi")])
    mid = base.mark_tick(color="black", size=28, thickness=2).encode(y="median:Q")
    return (whisker + box + mid).properties(width=320, height=220, title=title or f"{value} by {by}")


def data_map_chart(df: pd.DataFrame, *, by: str = "method", max_points: int = 1000) -> alt.Chart:
    """Uncertainty (predictive entropy) against distinctiveness of selected points, one panel per
    ``by`` (a seeded sample of at most ``max_points`` points each, to keep the chart light)."""
    _check(df, ["uncertainty", "distinctiveness", by])
    sample = pd.concat([g.sample(min(len(g), max_points), random_state=0) for _, g in df.groupby(by)])
    return (
        alt.Chart(sample)
        .mark_circle(size=12, opacity=0.4)
        .encode(x=alt.X("distinctiveness:Q"), y=alt.Y("uncertainty:Q"),
                color=alt.Color("group:N") if "group" in df else alt.value("steelblue"),
                tooltip=[c for c in ("index", "label", "group", "cf_gap") if c in df])
        .properties(width=200, height=180)
        .facet(column=alt.Column(f"{by}:N", title=None))
        .properties(title="Data maps of the selected points")
    )


def image_grid(X, titles=None, *, scale: int = 3, columns: int = 8) -> bytes:
    """A PNG (bytes) of images ``(n, C, H, W)`` in [0, 1] laid out in a grid, with optional captions.

    Display in a notebook with ``IPython.display.Image(image_grid(X, titles))``.
    """
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    X = np.asarray(X)
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, C, H, W) with C in (1, 3); got {X.shape}")
    n, c, h, w = X.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    cap = 12 if titles is not None else 0
    H, W = h * scale, w * scale
    canvas = Image.new("RGB", (cols * (W + 4), rows * (H + cap + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    for k in range(n):
        img = (np.clip(X[k], 0, 1) * 255).astype("uint8").transpose(1, 2, 0)
        tile = Image.fromarray(img[:, :, 0] if c == 1 else img).convert("RGB").resize((W, H), Image.NEAREST)
        x0, y0 = (k % cols) * (W + 4), (k // cols) * (H + cap + 4)
        canvas.paste(tile, (x0, y0))
        if titles is not None:
            draw.text((x0, y0 + H), str(titles[k])[: max(4, W // 6)], fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def pareto_chart(results: pd.DataFrame, *, x: str = "time_s", y: str = "dp_gap", by: str = "method",
                 minimize_y: bool = True, title: str | None = None) -> alt.LayerChart:
    """Mean ± std of ``y`` against mean ``x`` per (``by``, regime), with the Pareto front of the means drawn.

    ``results`` has one row per run (columns ``by``, ``regime``, ``x``, ``y``); e.g. the fairness gap
    (lower is better) or robust accuracy (higher is better) against training time.
    """
    from .stats import mean_std, pareto_front

    _check(results, [x, y, by, "regime"])
    s = mean_std(results.dropna(subset=[y]), by=[by, "regime"], metrics=[x, y]).fillna({f"{y}_std": 0.0})
    s["lo"], s["hi"] = s[f"{y}_mean"] - s[f"{y}_std"], s[f"{y}_mean"] + s[f"{y}_std"]
    front = pareto_front(s, x=f"{x}_mean", y=f"{y}_mean", minimize=[f"{x}_mean"] + ([f"{y}_mean"] if minimize_y else []))
    ex = alt.X(f"{x}_mean:Q", title=f"{x.replace('_', ' ')} (mean)", scale=alt.Scale(type="log"))
    ey = alt.Y(f"{y}_mean:Q", title=f"{y.replace('_', ' ')} ({'lower' if minimize_y else 'higher'} is better)",
               scale=alt.Scale(zero=False))
    base = alt.Chart(s)
    pts = base.mark_point(filled=True, size=60).encode(
        x=ex, y=ey, color=f"{by}:N", shape="regime:N",
        tooltip=[by, "regime", alt.Tooltip(f"{x}_mean:Q", format=".2f"), alt.Tooltip(f"{y}_mean:Q", format=".3f"),
                 alt.Tooltip(f"{y}_std:Q", format=".3f"), "n"])
    bars = base.mark_rule(opacity=0.5).encode(x=ex, y="lo:Q", y2="hi:Q", color=f"{by}:N")
    line = alt.Chart(front).mark_line(color="black", strokeDash=[4, 3]).encode(x=ex, y=ey)
    return (bars + pts + line).properties(width=420, height=280,
                                          title=title or f"{y} vs {x}: mean ± std over seeds, dashed = Pareto front")


def trajectory_chart(traj: pd.DataFrame, *, value: str = "lam_fair", by: str = "method") -> alt.Chart:
    """A scheduler's λ (or allocation) per epoch, one line per ``by`` (e.g. per method, seed 0)."""
    _check(traj, ["epoch", value, by])
    return alt.Chart(traj).mark_line(point=True).encode(
        x=alt.X("epoch:Q"), y=alt.Y(f"{value}:Q", title=value.replace("_", " ")), color=f"{by}:N",
        tooltip=[by, "epoch", alt.Tooltip(f"{value}:Q", format=".3f")],
    ).properties(width=300, height=200, title=f"{value.replace('_', ' ')} over epochs")


def _with_references(df: pd.DataFrame) -> pd.DataFrame:
    """Sweep rows with each constraint type's reference (constraint "none") repeated under that type, level "ref"."""
    df = df.copy()
    df["level_label"] = df["level"].astype(str)
    refs = df[df["constraint"] == "none"]
    parts = [df[df["constraint"] != "none"]]
    for c in df.loc[df["constraint"] != "none", "constraint"].unique():
        parts.append(refs.assign(constraint=c, level_label="ref"))
    return pd.concat(parts, ignore_index=True)


def _tightness(constraint: str, label: str) -> float:
    """Sort key of a level: the reference first, then from the loosest constraint to the tightest."""
    if label == "ref":
        return -1e9
    if constraint == "quantize":
        return {"int8": 1.0, "int4": 2.0}.get(label, 3.0)
    try:
        v = float(label)
    except ValueError:
        return 0.0
    return v if constraint.startswith("prune") else -v


def constraint_chart(results: pd.DataFrame, *, metric: str, by: str = "mitigation", columns: int = 4,
                     title: str | None = None, effects: pd.DataFrame | None = None) -> alt.FacetChart:
    """``metric`` against constraint level per ``by`` (mean and 95% interval over seeds), one panel per constraint type.

    ``results`` is a sweep's frame (columns ``constraint``, ``level``, ``by``, ``metric``); each panel
    starts at the unconstrained reference ("ref") and goes to the tightest level. Runs that did not
    train are left out. With fewer than 3 seeds no interval is drawn (a t interval on one degree of
    freedom spans most of the axis and says nothing). ``effects`` (from
    :func:`trustkit.experiments.sweep_effects`) marks each level with its verdict: a filled shape
    where the change from the reference survived the correction, open shapes elsewhere.
    """
    from .experiments._evidence import trained_mask
    from .stats import mean_ci

    _check(results, ["constraint", "level", by, metric])
    d = _with_references(results[trained_mask(results)].dropna(subset=[metric]))
    s = mean_ci(d, by=["constraint", "level_label", by], metrics=[metric])
    few = s["n"] < 3
    s["lo"] = s[f"{metric}_lo"].where(~few).fillna(s[f"{metric}_mean"])
    s["hi"] = s[f"{metric}_hi"].where(~few).fillna(s[f"{metric}_mean"])
    s["verdict"] = "reference"
    if effects is not None and len(effects):
        e = effects[effects["metric"] == metric]
        look = {(c, str(lv), str(b)): v for c, lv, b, v in zip(e["constraint"], e["level"], e[by], e["verdict"])}
        s["verdict"] = [("reference" if lv == "ref" else look.get((c, str(lv), str(b)), "not tested"))
                        for c, lv, b in zip(s["constraint"], s["level_label"], s[by])]

    s["order"] = [_tightness(c, v) for c, v in zip(s["constraint"], s["level_label"])]
    x = alt.X("level_label:N", title="level (ref = unconstrained)", sort=alt.EncodingSortField("order"))
    y = alt.Y(f"{metric}_mean:Q", title=metric.replace("_", " "), scale=alt.Scale(zero=False))
    base = alt.Chart(s)
    tip = ["constraint", "level_label", by, alt.Tooltip(f"{metric}_mean:Q", format=".3f"),
           alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f"), "n", "verdict"]
    line = base.mark_line().encode(x=x, y=y, color=f"{by}:N")
    shapes = {"changed": "circle", "reference": "square", "no change": "diamond", "inconclusive": "circle",
              "not tested": "cross", "did not train": "cross"}
    kinds = [k for k in shapes if k in set(s["verdict"])]
    points = base.mark_point(size=60, strokeWidth=2).encode(
        x=x, y=y, color=f"{by}:N", tooltip=tip,
        shape=alt.Shape("verdict:N", title="change from ref", scale=alt.Scale(domain=kinds, range=[shapes[k] for k in kinds])),
        fill=alt.condition(alt.datum.verdict == "changed", alt.Color(f"{by}:N"), alt.value("white")))
    bars = base.mark_rule().encode(x=x, y="lo:Q", y2="hi:Q", color=f"{by}:N")
    return (bars + line + points).properties(width=170, height=150).facet(
        facet=alt.Facet("constraint:N", title=None), columns=columns,
    ).resolve_scale(x="independent").properties(
        title=title or f"{metric.replace('_', ' ')} by constraint level: mean and 95% interval over seeds"
                       + ("; filled = changed after the correction" if effects is not None else ""))


def frontier_chart(results: pd.DataFrame, *, x: str, y: str, by: str = "mitigation", minimize_x: bool = True,
                   minimize_y: bool = True, log_x: bool = True, title: str | None = None) -> alt.LayerChart:
    """Each sweep cell's mean (``x``, ``y``) over seeds, coloured by ``by``, with the Pareto front of the means.

    E.g. fairness gap against training time, robust accuracy against time, accuracy against model
    bytes. ``minimize_*`` say which direction is better for the front.
    """
    from .stats import mean_std, pareto_front

    _check(results, [x, y, by, "constraint", "level"])
    d = results.dropna(subset=[x, y]).assign(level=lambda f: f["level"].astype(str))
    s = mean_std(d, by=["constraint", "level", by], metrics=[x, y]).fillna({f"{y}_std": 0.0})
    s["cell"] = s["constraint"] + "=" + s["level"]
    front = pareto_front(s, x=f"{x}_mean", y=f"{y}_mean",
                         minimize=([f"{x}_mean"] if minimize_x else []) + ([f"{y}_mean"] if minimize_y else []))
    ex = alt.X(f"{x}_mean:Q", title=x.replace("_", " "), scale=alt.Scale(type="log" if log_x else "linear"))
    ey = alt.Y(f"{y}_mean:Q", title=f"{y.replace('_', ' ')} ({'lower' if minimize_y else 'higher'} is better)",
               scale=alt.Scale(zero=False))
    pts = alt.Chart(s).mark_point(filled=True, size=50, opacity=0.8).encode(
        x=ex, y=ey, color=f"{by}:N", shape="constraint:N",
        tooltip=["cell", by, alt.Tooltip(f"{x}_mean:Q", format=".3g"), alt.Tooltip(f"{y}_mean:Q", format=".3f"), "n"])
    line = alt.Chart(front).mark_line(color="black", strokeDash=[4, 3]).encode(x=ex, y=ey)
    return (pts + line).properties(width=420, height=280, title=title or f"{y} vs {x}: cell means, dashed = Pareto front")


def interaction_chart(results: pd.DataFrame, *, metric: str, x: str = "constraint", by: str = "mitigation",
                      title: str | None = None) -> alt.LayerChart:
    """An interaction plot: mean ``metric`` per ``x`` level, one line per ``by`` (parallel lines = no interaction)."""
    from .stats import mean_ci

    _check(results, [x, by, metric])
    s = mean_ci(results.dropna(subset=[metric]).astype({x: str, by: str}), by=[x, by], metrics=[metric])
    s["lo"] = s[f"{metric}_lo"].fillna(s[f"{metric}_mean"])
    s["hi"] = s[f"{metric}_hi"].fillna(s[f"{metric}_mean"])
    ex = alt.X(f"{x}:N", title=x)
    ey = alt.Y(f"{metric}_mean:Q", title=metric.replace("_", " "), scale=alt.Scale(zero=False))
    line = alt.Chart(s).mark_line(point=True).encode(
        x=ex, y=ey, color=f"{by}:N", tooltip=[x, by, alt.Tooltip(f"{metric}_mean:Q", format=".3f"), "n"])
    bars = alt.Chart(s).mark_rule().encode(x=ex, y="lo:Q", y2="hi:Q", color=f"{by}:N")
    return (bars + line).properties(width=420, height=240,
                                    title=title or f"{metric.replace('_', ' ')}: {x} × {by} (mean, 95% interval)")


def forest_chart(df: pd.DataFrame, *, label: str, effect: str = "effect", lo: str = "ci_low", hi: str = "ci_high",
                 color: str | None = None, facet: str | None = None, title: str | None = None):
    """Effects with their 95% intervals, one row per ``label`` (a forest plot), zero marked.

    ``color`` (e.g. whether the effect is significant) colours the points; ``facet`` makes one
    panel per value (e.g. per goal, whose metrics have different scales).
    """
    cols = [label, effect, lo, hi] + [c for c in (color, facet) if c]
    _check(df, cols)
    data = df[cols].dropna(subset=[effect]).copy()
    data[lo], data[hi] = data[lo].fillna(data[effect]), data[hi].fillna(data[effect])

    def one(d, name):
        base = alt.Chart(d)
        y = alt.Y(f"{label}:N", title=None, sort=None, axis=alt.Axis(labelLimit=520))
        enc = {"color": alt.Color(f"{color}:N")} if color else {}
        return (base.mark_rule().encode(x=alt.X(f"{lo}:Q", title=f"{effect} (95% interval)"), x2=f"{hi}:Q", y=y)
                + base.mark_point(filled=True, size=60).encode(x=f"{effect}:Q", y=y, tooltip=cols, **enc)
                + alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(strokeDash=[4, 3], color="gray").encode(x="zero:Q")
                ).properties(width=360, height=alt.Step(18), title=name)

    if facet:
        chart = alt.vconcat(*[one(g, str(v)) for v, g in data.groupby(facet, sort=False)])
    else:
        chart = one(data, "")
    return chart.properties(title=title or "effects against ERM, paired by seed")


def cd_chart(ranking, *, title: str | None = None) -> alt.LayerChart:
    """A critical-difference diagram (Demšar 2006) of :func:`trustkit.stats.friedman_nemenyi`'s result.

    Each method sits at its average rank (1 = best, on the left); a bar below joins methods whose
    average ranks differ by less than the Nemenyi critical difference (they cannot be told apart),
    and the CD itself is drawn above the axis.
    """
    ranks = ranking["ranks"].sort_values()
    cd = float(ranking["cd"])
    pts = pd.DataFrame({"method": ranks.index.astype(str), "rank": ranks.to_numpy(float)})
    pts["row"] = 0.0
    cliques, names = [], list(ranks.index)
    for i in range(len(names)):  # maximal runs of consecutive methods within one CD
        j = i
        while j + 1 < len(names) and ranks.iloc[j + 1] - ranks.iloc[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in cliques):
            cliques.append((i, j))
    bars = pd.DataFrame([{"start": ranks.iloc[a], "end": ranks.iloc[b], "row": -(k + 1) * 0.5,
                          "methods": ", ".join(map(str, names[a:b + 1]))} for k, (a, b) in enumerate(cliques)],
                        columns=["start", "end", "row", "methods"])
    top = pd.DataFrame({"start": [1.0], "end": [1.0 + cd], "row": [0.6], "label": [f"CD = {cd:.2f}"]})
    k = int(ranking.get("methods", len(ranks)))
    x = alt.X("rank:Q", title="average rank (1 = best)", scale=alt.Scale(domain=[1, max(k, 2)]))
    y = alt.Y("row:Q", axis=None, scale=alt.Scale(domain=[-(len(cliques) + 1) * 0.5, 1.0]))
    layers = [alt.Chart(pts).mark_point(filled=True, size=80).encode(x=x, y=y, tooltip=["method", alt.Tooltip("rank:Q", format=".2f")]),
              alt.Chart(pts).mark_text(align="center", dy=-12).encode(x=x, y=y, text="method:N"),
              alt.Chart(top).mark_rule(strokeWidth=2, color="black").encode(x=alt.X("start:Q"), x2="end:Q", y=y),
              alt.Chart(top).mark_text(dy=-8, align="left").encode(x="start:Q", y=y, text="label:N")]
    if len(bars):
        layers.append(alt.Chart(bars).mark_rule(strokeWidth=5, color="gray").encode(
            x=alt.X("start:Q"), x2="end:Q", y=y, tooltip=["methods"]))
    p = ranking.get("p_value")
    ptxt = "n/a" if p is None or p != p else f"{p:.3g}"
    return alt.layer(*layers).properties(
        width=420, height=60 + 20 * len(cliques),
        title=title or f"average ranks over {ranking.get('blocks')} blocks (Friedman p = {ptxt}); grey bars join methods "
                       f"closer than the critical difference")


def planted_noise_chart(df: pd.DataFrame, *, y: str = "val_loss", by: str = "label") -> alt.FacetChart:
    """Share of flipped points kept (x) against ``y`` (``"val_loss"`` or ``"error"``) per method,
    one panel per noise kind (rows) and flip rate (columns): each seed's run as a faint point, the
    method's mean over seeds as a large one. Degenerate runs (``degenerate``, see
    :func:`trustkit.experiments.flag_degenerate`) are drawn as crosses, and a method with any
    degenerate run gets a cross for its mean too; the tooltip gives the count.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"label": ["random", "cleanlab"], "seed": 0, "noise_kind": "uniform", "flip_rate": 0.2,
    ...                    "flipped_kept": [0.2, 0.1], "val_loss": [0.6, 0.7], "degenerate": [False, True]})
    >>> planted_noise_chart(df).to_dict()["facet"]["row"]["field"]
    'noise_kind'
    """
    from .stats import mean_std

    if y not in ("val_loss", "error"):
        raise ValueError(f"y must be 'val_loss' or 'error'; got {y!r}")
    _check(df, ["flipped_kept", y, by, "flip_rate", "noise_kind", "seed"])
    d = df.dropna(subset=["flipped_kept", y]).copy()
    d["degenerate"] = d["degenerate"].fillna(False).astype(bool) if "degenerate" in d else False
    keys = ["noise_kind", "flip_rate", by]
    s = mean_std(d, by=keys, metrics=["flipped_kept", y])
    s["degenerate_runs"] = d.groupby(keys, sort=False)["degenerate"].sum().reindex(
        pd.MultiIndex.from_frame(s[keys])).to_numpy()
    s = s.rename(columns={"flipped_kept_mean": "flipped_kept", f"{y}_mean": y})
    s["run"] = ["degenerate" if k else "sound" for k in s["degenerate_runs"]]
    s["level"] = "mean over seeds"
    runs = d[[*keys, "seed", "flipped_kept", y, "degenerate"]].assign(
        run=lambda f: f["degenerate"].map({True: "degenerate", False: "sound"}), level="one seed")
    data = pd.concat([runs.drop(columns="degenerate"), s[[*keys, "flipped_kept", y, "run", "level", "n",
                                                          "degenerate_runs"]]], ignore_index=True)
    shape = alt.Shape("run:N", title="model", scale=alt.Scale(domain=["sound", "degenerate"], range=["circle", "cross"]))
    enc = dict(x=alt.X("flipped_kept:Q", title="share of flipped points kept"),
               y=alt.Y(f"{y}:Q", title="validation loss (clean labels)" if y == "val_loss" else "test error",
                       scale=alt.Scale(zero=False)),
               color=alt.Color(f"{by}:N", title="method"), shape=shape)
    seeds = alt.Chart().mark_point(opacity=0.3, size=30).encode(
        **enc, tooltip=[by, "seed", alt.Tooltip("flipped_kept:Q", format=".3f"), alt.Tooltip(f"{y}:Q", format=".3f"), "run"],
    ).transform_filter(alt.datum.level == "one seed")
    means = alt.Chart().mark_point(filled=True, size=140).encode(
        **enc, tooltip=[by, "n", "degenerate_runs", alt.Tooltip("flipped_kept:Q", format=".3f"),
                        alt.Tooltip(f"{y}:Q", format=".3f")],
    ).transform_filter(alt.datum.level == "mean over seeds")
    return (
        alt.layer(seeds, means, data=data).properties(width=240, height=200)
        .facet(row=alt.Row("noise_kind:N", title="noise"), column=alt.Column("flip_rate:O", title="flip rate"))
        .properties(title=f"Flipped points kept against {'validation loss' if y == 'val_loss' else 'test error'} "
                          "(crosses: degenerate models)")
    )
