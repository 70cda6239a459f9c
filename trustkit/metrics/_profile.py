"""A model's trust profile on a task: utility, fairness, adversarial, corruption, noise and OOD metrics in one row."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .._validation import check_int, check_positive
from ._evaluate import evaluate
from ._ood import msp_score, ood_auroc
from ._robustness import adversarial_accuracy, attack_geometry, corruption_table, feature_noise_accuracy, predict_logits

__all__ = ["trust_profile", "DEFAULT_EPS"]

#: ℓ∞ radii: pixels in [0, 1] for images; standard deviations of each numeric feature for tables.
DEFAULT_EPS = {"image": (0.03, 0.1), "tabular": (0.1, 0.3)}


def trust_profile(
    model: torch.nn.Module,
    task,
    *,
    split: str = "test",
    eps: Sequence[float] | None = None,
    pgd_steps: int = 20,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    noise_std: float = 0.5,
    max_examples: int | None = None,
    corruption_examples: int | None = None,
    corruption_seed: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric trustkit reports for one model on one split, as a flat dict.

    * utility and (with a sensitive attribute) fairness metrics, as :func:`evaluate`;
    * ``fgsm@ε`` and ``pgd@ε``: accuracy under ℓ∞ attacks (PGD: ``pgd_steps`` steps, random start);
    * images: ``corruption_acc`` (mean over ``corruptions`` × ``severities``), ``corruption_acc@s``
      per severity, and ``ood_auroc``: the MSP score separating clean inputs from the same inputs
      under the corruptions at severity 5;
    * tables: ``noise_acc``: accuracy with Gaussian noise of ``noise_std`` standard deviations on the
      numeric features. On tables, attacks and noise move only the numeric columns (one-hot
      categories stay valid categories); ε is in standard deviations of each numeric feature.

    ``max_examples`` evaluates the attacks and corruptions on the first examples only (quick runs).
    ``corruption_examples`` evaluates the corruptions and the OOD score on a fixed class-stratified
    subset of that many examples (the same subset for every seed and model; the corruption package
    works one image at a time, about 20 ms per image for the 19 corruptions, so the whole
    Fashion-MNIST test set at five severities takes some 20 minutes per model).
    ``corruption_seed`` seeds the corruptions (default ``seed``): give every model the same value
    to compare them on one corrupted test set, computed once and then read from
    :func:`trustkit.data.corrupt_images`' cache.
    """
    check_positive("corruption_examples", corruption_examples, allow_none=True, integer=True)
    if corruption_seed is not None:
        check_int("corruption_seed", corruption_seed, minimum=0)
    s = task.split(split)
    row = dict(evaluate(model, s))
    X, y = s.X, s.y
    if max_examples is not None:
        X, y = X[:max_examples], y[:max_examples]
    image = task.kind == "image"
    # tables: attacks and noise move the numeric columns only; one-hot categories stay valid
    bounds, mask = attack_geometry(task)
    for e in eps if eps is not None else DEFAULT_EPS[task.kind]:
        row[f"fgsm@{e:g}"] = adversarial_accuracy(model, X, y, e, attack="fgsm", bounds=bounds, mask=mask, seed=seed)
        row[f"pgd@{e:g}"] = adversarial_accuracy(model, X, y, e, attack="pgd", steps=pgd_steps, bounds=bounds, mask=mask, seed=seed)
    if image:
        if corruption_examples is not None:
            from ..data._images import _stratified_subset

            keep = _stratified_subset(np.asarray(y), int(corruption_examples), 0, "corruption_examples")
            X, y = np.asarray(X)[keep], np.asarray(y)[keep]
        cseed = seed if corruption_seed is None else int(corruption_seed)
        table = corruption_table(model, X, y, corruptions=corruptions, severities=severities, seed=cseed)
        row["corruption_acc"] = float(table["accuracy"].mean())
        for sev, acc in table.groupby("severity")["accuracy"].mean().items():
            row[f"corruption_acc@{sev}"] = float(acc)
        from ..data import CORRUPTIONS, corrupt_images

        names = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
        s_in = msp_score(predict_logits(model, X))
        s_out = torch.cat([msp_score(predict_logits(model, corrupt_images(np.asarray(X), c, 5, seed=cseed)))
                           for c in names])
        row["ood_auroc"] = ood_auroc(s_in, s_out)
    else:
        row["noise_acc"] = feature_noise_accuracy(model, X, y, noise_std, seed=seed, columns=task.numeric_columns)
    return row
