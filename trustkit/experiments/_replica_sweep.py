"""Sweep cells that differ only in their seed, trained as one replica job.

A sweep's evidence is the same cell over many seeds. :func:`replica_key` says which cells can share
a :class:`~trustkit.train.ReplicaTrainer` job (an MLP, no budget, no schedulers, loss terms a
replica job batches); :func:`sweep_group` trains every candidate setting of every cell of a group
in one job and hands each cell its models, so :func:`~trustkit.experiments.sweep_cell` goes on
from there (constraint steps, test profile, post-processing) exactly as for a cell trained alone.
:func:`~trustkit.experiments.run_sweep` uses both with ``replicas=True``.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

from ._store import run_key
from ._sweep import _cell_task, _need, _plan, reference_of, sweep_cell
from .constraints import get_constraint
from .mitigations import Mitigation, get_mitigation

__all__ = ["replica_key", "sweep_group"]


def _setup(cell: Mapping, task, choice):
    """The mitigation's (terms, weights, callbacks), or None when a replica job cannot train them."""
    from ..train import REPLICA_TERMS

    terms, weights, callbacks = get_mitigation(cell["mitigation"]).setup(cell, task, choice)
    if callbacks or not all(isinstance(t, REPLICA_TERMS) for t in terms):
        return None
    return terms, weights


def _signature(terms) -> list:
    from ..train._replicas import _settings_of

    return [(type(t), _settings_of(t)) for t in terms]


def replica_key(cell: Mapping, *, timed_refs: frozenset = frozenset()) -> str | None:
    """The key of the replica group ``cell`` joins (its config without the seed), or ``None``: alone.

    Alone are cells of other model families; mitigations that run a whole cell themselves, take
    further trainer arguments (a robust validation) or schedulers, or train with a term a replica
    job cannot batch (it batches cross-entropy, the fairness penalty and adversarial training);
    cells whose constraint reads the reference's time (their budget is a clock); and references
    in ``timed_refs`` (their measured time sets a time budget).
    """
    mitigation = get_mitigation(cell["mitigation"])
    if (cell["family"] != "mlp" or type(mitigation).run_cell is not Mitigation.run_cell
            or mitigation.trainer_kwargs(cell) or get_constraint(cell["constraint"]).needs
            or run_key(cell) in timed_refs):
        return None
    task = _cell_task(cell)
    if any(_setup(cell, task, c) is None for c in mitigation.candidates(cell)):
        return None
    return run_key({k: v for k, v in cell.items() if k != "seed"})


def sweep_group(cells: Sequence[Mapping], *, derived: Mapping | None = None) -> list[dict]:
    """Run cells that differ only in their seed; one record per cell, in order.

    Every cell's candidate settings (a reference cell's λ values; a constrained cell's reference
    pick) become replicas of one :class:`~trustkit.train.ReplicaTrainer` job, each with its cell's
    seed, split and loss weights; each cell then continues in :func:`sweep_cell` with its trained
    models. Only jobs with the same plan after their constraint's step, the same split sizes and
    columns (a category absent from one seed's training split gives its one-hot table a column
    fewer) and the same terms step together; a job left alone, or one that needs a budget, is
    trained by :func:`sweep_cell` as usual.
    """
    from ..train import ReplicaTrainer

    # jobs that can step together share a key: the plan, the split's sizes and columns, the terms
    together: dict[tuple, list] = {}  # key -> [(cell position, choice, task, terms, weights, plan)]
    for i, cell in enumerate(cells):
        task = _cell_task(cell)
        constraint, mitigation = get_constraint(cell["constraint"]), get_mitigation(cell["mitigation"])
        ref = dict((derived or {}).get(run_key(reference_of(cell)), {}))
        for key in constraint.needs:
            _need(ref, key, cell)
        plan = _plan(cell)
        constraint.before(cell["level"], plan, cell=cell, task=task, ref=ref)
        if plan.budget is not None:
            continue
        choices = mitigation.candidates(cell) if cell["constraint"] == "none" else [ref.get("choice")]
        for choice in choices:
            setup = _setup(cell, task, choice)
            if setup is None:
                break
            key = (json.dumps(plan.model_kwargs, sort_keys=True), plan.epochs, plan.lr, plan.batch_size,
                   len(task.train), len(task.val), task.input_shape, task.n_classes, repr(_signature(setup[0])))
            together.setdefault(key, []).append((i, choice, task, *setup, plan))
    trained: list[dict] = [{} for _ in cells]
    for jobs in together.values():
        if len(jobs) < 2:  # alone: sweep_cell trains it
            continue
        plan = jobs[0][5]
        rt = ReplicaTrainer(seeds=[int(cells[i]["seed"]) for i, *_ in jobs], model=cells[0]["family"],
                            model_kwargs=plan.model_kwargs, terms=[j[3] for j in jobs], weights=[j[4] for j in jobs],
                            epochs=plan.epochs, lr=plan.lr, batch_size=plan.batch_size, progress=False)
        records = rt.fit([j[2] for j in jobs])
        for (i, choice, _, terms, _, _), model, record in zip(jobs, rt.models_, records):
            trained[i][json.dumps(choice)] = (model, record, terms)
    return [sweep_cell(c, derived=derived, trained=t) for c, t in zip(cells, trained)]
