"""The ``trustkit`` command: run the tour report, list datasets, train one model under a budget, run a sweep.

``trustkit train --csv loans.csv --label approved --sensitive sex --positive-label yes`` trains on
your own table through the same checks and splits as ``load_task("csv", ...)``; bad input is one
line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _print_report(results, out) -> int:
    from pathlib import Path

    width = max(len(r["name"]) for r in results)
    for r in results:
        where = r.get("paths", {}).get("html") or r.get("paths", {}).get("notebook") or ""
        line = f"{r['name']:<{width}}  {r['status']:<6}  {r['seconds'] or 0:6.0f} s  {where}"
        print(line + (f"\n{'':<{width}}  {r['error']}" if r["error"] else ""))
    print(f"index: {Path(out) / 'index.html'}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _cmd_demo(args) -> int:
    from .report import run_report

    out = args.out
    return _print_report(run_report(["all"], preset="full" if args.full else "quick", out_dir=out), out)


def _cmd_report(args) -> int:
    from pathlib import Path

    from .report import NOTEBOOKS, run_notebook, run_report

    params = {k: _parse_value(v) for k, v in (args.parameter or [])}
    names = args.notebooks or ["all"]
    if len(names) == 1 and names[0] not in NOTEBOOKS and names[0] != "all" and Path(names[0]).suffix == ".ipynb":
        if args.preset != "quick" or args.dataset is not None:  # a notebook of your own: parameters as given
            raise ValueError("--preset and --dataset apply to the phase notebooks; pass -p NAME VALUE to your notebook")
        paths = run_notebook(names[0], out_dir=args.out, parameters=params, html=not args.no_html, show_code=args.show_code)
        for k, p in paths.items():
            print(f"{k}: {p}")
        return 0
    if args.no_html:
        raise ValueError("--no-html applies to a single notebook path; the phase report always writes its pages")
    results = run_report(names, preset=args.preset, dataset=args.dataset, parameters=params, out_dir=args.out,
                         show_code=args.show_code)
    return _print_report(results, args.out)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _left_aligned(table) -> str:
    """A small table as text with left-aligned columns (long free-text details read better)."""
    cols = list(table.columns)
    cells = [cols] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(r[j]) for r in cells) for j in range(len(cols) - 1)]
    return "\n".join("  ".join([*(r[j].ljust(widths[j]) for j in range(len(widths))), r[-1]]) for r in cells)


def _csv_kwargs(args) -> dict | None:
    """The ``load_task("csv", ...)`` arguments given on the command line, or None without --csv."""
    csv_only = {"--label": args.label, "--sensitive": args.sensitive, "--positive-label": args.positive_label,
                "--drop": args.drop, "--na-values": args.na_values, "--min-group-size": args.min_group_size}
    if args.csv is None:
        given = [flag for flag, value in csv_only.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only with --csv PATH (these options describe your own table)")
        return None
    if not args.label:
        raise ValueError("--csv needs --label COL, the binary label column")
    if not args.sensitive:
        raise ValueError("--csv needs --sensitive COL, the sensitive column (repeat it for intersectional groups)")
    return {
        "path": args.csv, "label": args.label,
        "sensitive": args.sensitive[0] if len(args.sensitive) == 1 else list(args.sensitive),
        "positive_label": args.positive_label, "drop": list(args.drop or ()), "na_values": args.na_values,
        "encoding": args.encoding, "sep": args.sep, "min_group_size": args.min_group_size,
    }


def _cmd_datasets(args) -> int:
    import pandas as pd

    from .data import DATASETS, dataset_availability, dataset_overview

    csv_kwargs = _csv_kwargs(args)
    names = list(args.names) or list(DATASETS)
    if csv_kwargs is not None and "csv" not in names:
        names.append("csv")
    table = dataset_availability(names, root=args.root)
    sizes, balance, failed = [], [], None
    for i, name in enumerate(table["dataset"]):
        if name == "csv":
            if csv_kwargs is None:
                continue
            kwargs = csv_kwargs
        elif table.loc[i, "status"] != "available":
            continue
        else:
            kwargs = {"root": args.root} if name in ("mnist", "cifar10") else {}
        try:
            s, b = dataset_overview([name], dataset_kwargs={name: kwargs})
        except Exception as exc:  # a listing reports a dataset it cannot read; it does not stop
            table.loc[i, ["status", "detail"]] = ["unreadable", f"{type(exc).__name__}: {_one_line(exc)}"]
            if name == "csv":
                failed = exc
            continue
        if name == "csv":
            table.loc[i, ["status", "detail"]] = ["available", str(args.csv)]
        sizes.append(s)
        balance.append(b)
    print(_left_aligned(table))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        if sizes:
            print()
            print(pd.concat(sizes, ignore_index=True).to_string(index=False))
        balance = [b for b in balance if len(b)]
        if balance:
            print()
            print(pd.concat(balance, ignore_index=True).to_string(index=False))
    if failed is not None:
        print(f"trustkit: error: {_one_line(failed)}", file=sys.stderr)
        return 2
    return 0


def _cmd_train(args) -> int:
    from .budget import Budget
    from .data import load_task
    from .train import Trainer

    csv_kwargs = _csv_kwargs(args)
    if csv_kwargs is not None:
        if args.dataset not in (None, "csv"):
            raise ValueError(f"give either --dataset or --csv, not both (got --dataset {args.dataset})")
        task = load_task("csv", seed=args.seed, **csv_kwargs)
    else:
        dataset = args.dataset or "compas"
        if dataset == "csv":
            raise ValueError("--dataset csv needs --csv PATH --label COL --sensitive COL")
        kwargs = {"root": args.root} if dataset in ("mnist", "cifar10") else {}
        task = load_task(dataset, seed=args.seed, **kwargs)
    budget = Budget(time_s=args.time_budget, memory_mb=args.memory_budget, flops=args.flops_budget)
    model = args.model or ("cnn" if task.kind == "image" else "mlp")
    record = Trainer(model=model, epochs=args.epochs, lr=args.lr, budget=budget, seed=args.seed).fit(task)
    print(json.dumps(record.summary(), indent=1, default=float))
    if record.message:
        print(record.message, file=sys.stderr)
    return 0


def _add_csv_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own table (a CSV file)")
    g.add_argument("--csv", metavar="PATH", default=None, help="a CSV file with a header row")
    g.add_argument("--label", metavar="COL", default=None, help="the binary label column")
    g.add_argument("--sensitive", metavar="COL", action="append", default=None,
                   help="the sensitive column; repeat it for intersectional groups")
    g.add_argument("--positive-label", metavar="VALUE", default=None,
                   help="the label value that counts as positive (default: 1 for a 0/1 label)")
    g.add_argument("--drop", metavar="COL", action="append", default=None, help="a column to leave out (repeatable)")
    g.add_argument("--na-values", metavar="TOKEN", action="append", default=None,
                   help="a token that means missing, e.g. '?' (repeatable)")
    g.add_argument("--min-group-size", type=int, default=None, metavar="N",
                   help="the fewest rows a sensitive group may have (default: two in the smallest split)")
    g.add_argument("--encoding", default="utf-8", help="the file's text encoding (default utf-8)")
    g.add_argument("--sep", default=",", help="the field separator (default ',')")


def _cmd_sweep(args) -> int:
    from .experiments import run_sweep, sweep_status

    if args.status is not None:
        st = sweep_status(args.status)
        total = "?" if st["total"] is None else st["total"]
        print(f"{st['store']}: {st['done']} / {total} done, {st['failed']} failed"
              + ("" if st["remaining"] is None else f", {st['remaining']} to run"))
        return 0
    if args.grid is None:
        raise ValueError("give a grid file (trustkit sweep GRID.yaml) or --status DIR")
    if args.workers is not None and args.scheduler_address is not None:
        raise ValueError("give --workers (local processes) or --scheduler-address (a Dask cluster), not both")
    executor = "dask" if args.scheduler_address else ("processes" if (args.workers or 1) > 1 else "sequential")
    store = args.store or f"sweeps/{__import__('pathlib').Path(args.grid).stem}"
    df = run_sweep(args.grid, store=store, executor=executor, workers=args.workers,
                   scheduler_address=args.scheduler_address, threads=args.threads, extend=args.extend,
                   replicas=args.replicas)
    from .experiments import sweep_status as _st

    st = _st(store)
    print(f"{len(df)} cells in {store} ({st['done']} / {st['total']} done, {st['failed']} failed)")
    return 0 if st["failed"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trustkit", description="Trustworthy ML under compute budgets.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the quick report of every phase notebook, into reports/ (trustkit report all)")
    d.add_argument("--out", default="reports", help="output folder (default: reports)")
    d.add_argument("--full", action="store_true", help="the full preset instead of the quick one")
    d.set_defaults(fn=_cmd_demo)

    r = sub.add_parser("report", help="run phase notebooks through papermill: pages, charts, key numbers, index.html")
    r.add_argument("notebooks", nargs="*", default=[],
                   help="all (default), or short names: tour tradeoffs bounds adaptive vtrust guidelines; "
                        "or the path of one notebook of your own")
    r.add_argument("--preset", default="quick", help="quick (about a minute per notebook on 2 cores) or full")
    r.add_argument("--dataset", default=None, help="the dataset of every notebook that takes one (e.g. adult)")
    r.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a notebook parameter for every notebook that declares it, or NOTEBOOK.NAME for one; "
                        "VALUE is parsed as JSON when it can be (true, 3, [0,1])")
    r.add_argument("--out", default="reports", help="output folder (default: reports)")
    r.add_argument("--no-html", action="store_true", help="(one notebook path only) skip the HTML page")
    r.add_argument("--show-code", action="store_true", help="keep the code cells in the HTML (hidden by default)")
    r.set_defaults(fn=_cmd_report)

    s = sub.add_parser("datasets", help="which datasets are available, their sizes and sensitive-group balance")
    s.add_argument("names", nargs="*", default=[], help="datasets to list (default: all)")
    s.add_argument("--root", default=None, help="a local torchvision root holding MNIST / CIFAR-10")
    _add_csv_options(s)
    s.set_defaults(fn=_cmd_datasets)

    t = sub.add_parser("train", help="train one model under a budget and print its record")
    t.add_argument("--dataset", default=None, help="a built-in dataset (default: compas); see `trustkit datasets`")
    t.add_argument("--root", default=None, help="the torchvision root for mnist / cifar10")
    t.add_argument("--model", default=None, help="mlp, cnn or resnet18 (default: by task)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--time-budget", type=float, default=None, help="seconds")
    t.add_argument("--memory-budget", type=float, default=None, help="MB above the start of the run")
    t.add_argument("--flops-budget", type=float, default=None)
    _add_csv_options(t)
    t.set_defaults(fn=_cmd_train)

    w = sub.add_parser("sweep", help="run a factorial sweep of constraints × mitigations from a grid file (resumable)")
    w.add_argument("grid", nargs="?", default=None, help="a grid YAML file (grids/quick.yaml, grids/medium.yaml)")
    w.add_argument("--store", default=None, help="the result folder (default: sweeps/<grid name>)")
    w.add_argument("--workers", type=int, default=None, help="local worker processes (default: 1, sequential)")
    w.add_argument("--scheduler-address", default=None, help="a Dask scheduler, e.g. tcp://10.0.0.5:8786")
    w.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: the cores divided by the workers)")
    w.add_argument("--status", default=None, metavar="DIR", help="print done / total / failed of the sweep in DIR")
    w.add_argument("--extend", action="store_true",
                   help="add this grid's cells to a store written by another grid (refused otherwise)")
    w.add_argument("--replicas", action="store_true",
                   help="train cells that differ only in their seed as one batched job (plain MLP cells "
                        "without a time budget or schedulers); one record per cell all the same")
    w.set_defaults(fn=_cmd_sweep)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError, OSError) as exc:  # bad input: one line, exit code 2, no traceback
        print(f"trustkit: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
