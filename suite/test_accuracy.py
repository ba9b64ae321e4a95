"""fp32 top-1 on the real CIFAR-10 test set: the gate CI refuses regressions with."""

import numpy as np
import pytest

from r8.data import CLASSES
from r8.metrics import per_class, predict, top1
from r8.runners import TorchRunner

pytestmark = pytest.mark.accuracy

MIN_FP32_TOP1 = 0.85  # issue #2


def test_fp32_top1_10k(keras_probs, torch_probs, test_split, report):
    labels = test_split.labels
    for backend, probs in (("keras", keras_probs), ("torch", torch_probs)):
        classes = ", ".join(f"{c} {a:.1%}" for c, a in zip(CLASSES, per_class(probs, labels)))
        report(f"fp32 top-1 {backend} (10k)", f"{top1(probs, labels):.2%}")
        report(f"fp32 per-class {backend} (10k)", classes)
    # torchmetrics' figure is the count of right answers, image for image
    assert top1(torch_probs, labels) == np.mean(torch_probs.argmax(1) == labels)
    assert top1(keras_probs, labels) >= MIN_FP32_TOP1
    assert top1(torch_probs, labels) >= MIN_FP32_TOP1
    mismatched = np.flatnonzero(keras_probs.argmax(1) != torch_probs.argmax(1))
    assert mismatched.size == 0, f"keras and torch disagree on test images {mismatched[:20]}"


def test_fp32_top1_perf200(keras_runner, torch_model, perf200, report):
    keras_probs = predict(keras_runner, perf200.images, progress=False)
    torch_probs = predict(TorchRunner(torch_model), perf200.images, progress=False)
    report("fp32 top-1 keras / torch (perf200)",
           f"{top1(keras_probs, perf200.labels):.2%} / {top1(torch_probs, perf200.labels):.2%}")
    assert len(perf200.labels) == 200
    assert np.array_equal(keras_probs.argmax(1), torch_probs.argmax(1))
