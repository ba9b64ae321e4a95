"""fp32 top-1 of the MLPerf Tiny ResNet8 on the MLPerf Tiny perf set (the 10k-image gates run for
any model in :mod:`r8.gates`), and torchmetrics counting right answers image by image."""

import numpy as np
import pytest

from r8.metrics import predict, top1
from r8.runtimes.runners import TorchRunner

pytestmark = pytest.mark.accuracy


def test_top1_is_the_count_of_right_answers(torch_probs, test_split):
    assert top1(torch_probs, test_split.labels) == np.mean(torch_probs.argmax(1) == test_split.labels)


def test_fp32_top1_perf200(keras_runner, torch_model, perf200, report):
    keras_probs = predict(keras_runner, perf200.images, progress=False)
    torch_probs = predict(TorchRunner(torch_model), perf200.images, progress=False)
    report("fp32 top-1 keras / torch (perf200)",
           f"{top1(keras_probs, perf200.labels):.2%} / {top1(torch_probs, perf200.labels):.2%}")
    assert len(perf200.labels) == 200
    assert np.array_equal(keras_probs.argmax(1), torch_probs.argmax(1))
