"""Accuracy figures (torchmetrics) and paired statistics, on cases small enough to count by hand."""

import numpy as np
import pytest

from r8.metrics import confusion, paired_drop, per_class, top1


def _probs(classes):
    return np.eye(10, dtype=np.float32)[classes]


def test_accuracy_counted_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predicted = _probs([0, 1, 1, 1, 0, 2])  # right: 1 of 2 zeros, 2 of 3 ones, the two
    assert top1(predicted, labels) == 4 / 6
    assert per_class(predicted, labels)[:3] == [1 / 2, 2 / 3, 1.0]
    matrix = np.array(confusion(predicted, labels))
    assert matrix.dtype.kind == "i"
    assert matrix[0, :2].tolist() == [1, 1] and matrix[1, :2].tolist() == [1, 2] and matrix[2, 2] == 1
    assert matrix.sum() == 6


def test_paired_drop_counted_by_hand():
    labels = np.zeros(20, dtype=int)
    reference = _probs([0] * 18 + [1, 1])  # 18 right
    candidate = _probs([1, 1, 1] + [0] * 15 + [0, 1])  # loses 3 of those, gains image 18: 16 right
    result = paired_drop(reference, candidate, labels)
    assert result["discordant"] == [3, 1]
    assert result["mcnemar_p"] == pytest.approx(10 / 16)  # P(X <= 1 or X >= 3), X ~ Binomial(4, 1/2)
    lo, hi = result["drop_ci95_pp"]
    assert lo <= 10.0 <= hi and lo < 0 < hi  # a 2-image drop in 20 is not significant


def test_paired_drop_identical_models():
    labels = np.arange(10)
    result = paired_drop(_probs(labels), _probs(labels), labels)
    assert result == {"discordant": [0, 0], "mcnemar_p": 1.0, "drop_ci95_pp": [0.0, 0.0]}


def test_paired_drop_is_seeded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    a, b = _probs(np.where(rng.random(500) < 0.9, labels, 0)), _probs(np.where(rng.random(500) < 0.85, labels, 0))
    assert paired_drop(a, b, labels) == paired_drop(a, b, labels)


def test_paired_drop_interval_is_the_percentile_bootstrap_of_the_images():
    """The interval drawn from lost/gained counts is scipy's percentile bootstrap over the per-image
    drops (the same distribution: the two agree within their resampling noise, about 0.05 pp here)."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 10_000)
    reference = np.where(rng.random(10_000) < 0.88, labels, (labels + 1) % 10)
    candidate = np.where(rng.random(10_000) < 0.03, (labels + 2) % 10, reference)  # loses about 260 images
    candidate[:80] = labels[:80]  # and gains back those of the first 80 the reference got wrong
    diff = (reference == labels).astype(float) - (candidate == labels)
    scipy_ci = bootstrap((diff,), np.mean, n_resamples=10_000, method="percentile", rng=np.random.default_rng(0)).confidence_interval
    lo, hi = paired_drop(_probs(reference), _probs(candidate), labels)["drop_ci95_pp"]
    assert lo == pytest.approx(scipy_ci.low * 100, abs=0.08) and hi == pytest.approx(scipy_ci.high * 100, abs=0.08)
    assert lo < diff.mean() * 100 < hi and lo > 0
