"""Batched prediction with a progress bar; accuracy figures (torchmetrics) and how sure a
difference between two models on the same images is (scipy)."""

import numpy as np
import torch

from r8.core import console
from r8.core.batch import rows, size
from r8.data import Split

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def predict(runner, images, batch_size: int = 500, progress: bool = True) -> np.ndarray:
    """``runner``'s output on ``images`` (an array, or a tuple of arrays for a model with several inputs)."""
    out = []
    for start in console.progress(range(0, size(images), batch_size), runner.name, progress, step=False, unit="batch"):
        out.append(runner.predict(rows(images, slice(start, start + batch_size))))
    return np.concatenate(out)


def _metric(metric, probs: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """``metric`` on the predicted classes, in float64 so a fraction reads as counted (0.8678, not 0.86779999)."""
    metric = metric.set_dtype(torch.float64)
    return metric(torch.from_numpy(np.asarray(probs).argmax(1)), torch.from_numpy(np.asarray(labels)))


def top1(probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    from torchmetrics.classification import MulticlassAccuracy

    return float(_metric(MulticlassAccuracy(num_classes or probs.shape[1], average="micro"), probs, labels))


def per_class(probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> list[float]:
    from torchmetrics.classification import MulticlassAccuracy

    return _metric(MulticlassAccuracy(num_classes or probs.shape[1], average=None), probs, labels).tolist()


def confusion(probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    return _metric(MulticlassConfusionMatrix(num_classes or probs.shape[1]), probs, labels).long().tolist()  # counts, not floats


def evaluate(runner, split: Split, progress: bool = True) -> dict:
    """The ``evaluate --json`` record: backend, subset, n, top1 and per-class top-1 (fractions)."""
    probs = predict(runner, split.images, progress=progress)
    return {"backend": runner.name, "subset": split.name, "n": len(split.labels),
            "top1": top1(probs, split.labels), "per_class": per_class(probs, split.labels)}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows whose argmax (predicted class) is the same in both outputs."""
    return float((a.argmax(1) == b.argmax(1)).mean())


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> tuple[int, int, float]:
    """Two models' per-image correctness on the same images: the discordant counts [a right and b
    wrong, the reverse] and the exact McNemar p-value (a two-sided binomial test on them)."""
    from scipy.stats import binomtest

    b, c = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
    return b, c, float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0


def paired_drop(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict:
    """How sure the top-1 drop from ``reference`` to ``candidate`` (probabilities on the same
    images) is: the discordant counts [reference right and candidate wrong, the reverse], the
    exact McNemar p-value (a two-sided binomial test on the discordant pairs), and a 95 %
    paired-bootstrap interval of the drop in percent points (percentile method, fixed seed).

    Per image the drop is 1 (lost), -1 (gained) or 0, so a resample of the n images is known by how
    many lost and gained images it drew: multinomial counts (n; b/n, c/n, rest). Drawing those counts
    is the same bootstrap as resampling the images, without 10,000 passes over them."""
    ref_right, cand_right = reference.argmax(1) == labels, candidate.argmax(1) == labels
    b, c, p = mcnemar(ref_right, cand_right)
    if b + c:
        n = len(labels)
        lost, gained, _ = np.random.default_rng(BOOTSTRAP_SEED).multinomial(
            n, np.array([b, c, n - b - c]) / n, size=BOOTSTRAP_RESAMPLES).T
        lo, hi = (float(q) for q in np.percentile((lost - gained) / n * 100, [2.5, 97.5]))
    else:
        lo = hi = 0.0  # identical on every image: no spread to resample
    return {"discordant": [b, c], "mcnemar_p": float(p), "drop_ci95_pp": [round(lo, 4), round(hi, 4)]}
