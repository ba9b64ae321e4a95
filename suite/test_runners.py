"""Runners: LiteRT (the maintained TF Lite interpreter) gives tf.lite's numbers exactly."""

import numpy as np
import pytest

from r8 import paths
from r8.runners import TfliteRunner


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32-reference", "int8-reference"])
def test_litert_equals_tf_lite(quantized, perf200):
    path = paths.tflite_model_path(quantized)
    litert = TfliteRunner(path, interpreter="litert")
    assert TfliteRunner(path).engine == "litert"  # the default where ai-edge-litert is installed
    assert np.array_equal(litert.predict(perf200.images),
                          TfliteRunner(path, interpreter="tf.lite").predict(perf200.images))
