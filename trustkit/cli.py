"""The ``trustkit`` command: run the tour report, list datasets, train one model under a budget."""

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


def _cmd_demo(args) -> int:
    from .report import run_notebook

    params = {"quick": not args.full, "static_charts": True}
    paths = run_notebook("tour", out_dir=args.out, parameters=params)
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


def _cmd_report(args) -> int:
    from .report import run_notebook

    params = {k: _parse_value(v) for k, v in (args.parameter or [])}
    paths = run_notebook(args.notebook, out_dir=args.out, parameters=params, html=not args.no_html)
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


def _cmd_datasets(args) -> int:
    import pandas as pd

    from .data import dataset_overview

    sizes, balance = dataset_overview(args.names)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(sizes.to_string(index=False))
        print()
        print(balance.to_string(index=False))
    return 0


def _cmd_train(args) -> int:
    from .budget import Budget
    from .data import load_task
    from .train import Trainer

    task = load_task(args.dataset, seed=args.seed)
    budget = Budget(time_s=args.time_budget, memory_mb=args.memory_budget, flops=args.flops_budget)
    model = args.model or ("cnn" if task.kind == "image" else "mlp")
    record = Trainer(model=model, epochs=args.epochs, lr=args.lr, budget=budget, seed=args.seed).fit(task)
    print(json.dumps(record.summary(), indent=1, default=float))
    if record.message:
        print(record.message, file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trustkit", description="Trustworthy ML under compute budgets.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the tour notebook on the offline data and write reports/")
    d.add_argument("--out", default="reports", help="output folder (default: reports)")
    d.add_argument("--full", action="store_true", help="the full preset instead of the quick one")
    d.set_defaults(fn=_cmd_demo)

    r = sub.add_parser("report", help="run a notebook through papermill with parameters")
    r.add_argument("notebook", help="path or short name (tour, bounds, adaptive, vtrust)")
    r.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a papermill parameter; VALUE is parsed as JSON when it can be (true, 3, [0,1])")
    r.add_argument("--out", default="reports")
    r.add_argument("--no-html", action="store_true")
    r.set_defaults(fn=_cmd_report)

    s = sub.add_parser("datasets", help="sizes and sensitive-group balance of the offline datasets")
    s.add_argument("names", nargs="*", default=["adult", "compas", "german", "digits"])
    s.set_defaults(fn=_cmd_datasets)

    t = sub.add_parser("train", help="train one model under a budget and print its record")
    t.add_argument("--dataset", default="compas")
    t.add_argument("--model", default=None, help="mlp, cnn or resnet18 (default: by task)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--time-budget", type=float, default=None, help="seconds")
    t.add_argument("--memory-budget", type=float, default=None, help="MB above the start of the run")
    t.add_argument("--flops-budget", type=float, default=None)
    t.set_defaults(fn=_cmd_train)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"trustkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
