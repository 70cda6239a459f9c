"""Experiments: sweeps over datasets, seeds and methods with a resumable result store.

* :mod:`._store`: :class:`ResultStore` (one atomic JSON file per finished run) and :func:`run_grid`;
* :mod:`._overview`: the ERM trust overview (:func:`erm_overview`);
* :mod:`._selection`: VTruST and its baselines (:func:`selection_comparison`, …);
* :mod:`._adaptive`: adaptive trust-aware training under budget regimes (:func:`adaptive_comparison`, …);
* :mod:`._sweep`: factorial sweeps of constraints × mitigations (:func:`run_sweep`, :func:`expand_grid`, …);
* :mod:`._bounds`: empirical checks of the compute–trust bounds (:func:`gap_vs_steps`, …);
* :mod:`._evidence`: paired tests, one corrected family and a verdict per question, for every phase;
* :mod:`._guidelines`: guidelines and claims from the stores (:func:`guidelines_table`, :func:`claims_check`);
* :mod:`._planted`: stores with a planted truth, to check that chain (:func:`planted_sweep`, …).
"""

from ._adaptive import (
    ADAPTIVE_METHODS,
    FAIRNESS_ONLY,
    REGIMES,
    STATIC_METHODS,
    adaptive_comparison,
    adaptive_run,
    interactive_run,
    reference_time,
    tests_against_best_static,
)
from ._bounds import gap_vs_steps, gaussian_model_task, loglog_slope, measured_gaussian_frontier, oracle_gap_vs_steps
from ._evidence import add_verdicts, design_labels, paired_tests, trained_mask
from ._guidelines import (GUIDELINE_VERDICTS, PROPOSAL_METHODS, adaptive_claims, choose_vtrust_lambda, claims_check,
                          find_stores, guideline_tests, guidelines_table, load_phase_results, markdown_table, robust_claims,
                          noise_claims, vtrust_claims)
from ._planted import (PLANTED_BASE, planted_adaptive, planted_selection, planted_sweep, planted_truth,
                       write_planted_reports)
from ._overview import QUICK_CORRUPTIONS, erm_overview
from ._selection import (
    DEGENERATE_ERROR_MARGIN,
    DEGENERATE_SHARE,
    FIELD_METHODS,
    REFERENCE_METHODS,
    ROBUST_METHODS,
    SELECTION_METHODS,
    SELECTOR_VERSION,
    class_balance_reading,
    lambda_search,
    robust_selection_comparison,
    saug_pool,
    select_subset,
    selection_comparison,
    selection_explanations,
    selection_tests,
    subset_balance,
    VARIANT_METHODS,
    NOISE_METRICS,
    flag_degenerate,
    planted_noise_table,
)
from ._store import EXECUTORS, ResultStore, RunFailed, run_grid, run_key, worker_threads
from ._sweep import (
    CONSTRAINTS, DESIGN_COLUMNS, MITIGATIONS, describe_setting, expand_grid, grid_file, load_grid, run_sweep, sweep_cell, sweep_effects,
    sweep_findings, sweep_frame, sweep_status,
)

__all__ = ["ResultStore", "run_key", "run_grid", "EXECUTORS", "RunFailed", "worker_threads", "CONSTRAINTS",
           "MITIGATIONS", "DESIGN_COLUMNS", "grid_file", "expand_grid", "load_grid", "run_sweep", "sweep_cell", "sweep_frame", "sweep_status", "sweep_effects", "sweep_findings", "describe_setting", "erm_overview", "QUICK_CORRUPTIONS", "select_subset",
           "selection_comparison", "selection_explanations", "lambda_search", "SELECTION_METHODS", "REFERENCE_METHODS",
           "FIELD_METHODS", "VARIANT_METHODS", "flag_degenerate", "planted_noise_table", "NOISE_METRICS", "DEGENERATE_ERROR_MARGIN", "DEGENERATE_SHARE",
           "robust_selection_comparison", "ROBUST_METHODS", "selection_tests", "saug_pool", "subset_balance", "class_balance_reading",
           "SELECTOR_VERSION",
           "REGIMES", "STATIC_METHODS", "ADAPTIVE_METHODS", "FAIRNESS_ONLY", "reference_time", "adaptive_run", "adaptive_comparison",
           "tests_against_best_static",
           "interactive_run", "gap_vs_steps", "oracle_gap_vs_steps", "loglog_slope", "gaussian_model_task",
           "measured_gaussian_frontier", "find_stores", "load_phase_results", "guidelines_table",
           "claims_check", "markdown_table", "paired_tests", "add_verdicts", "design_labels", "trained_mask",
           "guideline_tests", "adaptive_claims", "vtrust_claims", "noise_claims", "robust_claims", "choose_vtrust_lambda",
           "GUIDELINE_VERDICTS", "PROPOSAL_METHODS", "planted_sweep", "planted_adaptive", "planted_selection",
           "planted_truth", "write_planted_reports", "PLANTED_BASE"]
