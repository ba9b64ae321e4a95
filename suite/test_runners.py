"""Runners: LiteRT (the maintained TF Lite interpreter) gives tf.lite's numbers exactly."""

import numpy as np
import pytest
from file_facts import tflite_model_path

from r8.runtimes.runners import TfliteRunner, integer_input


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32-reference", "int8-reference"])
def test_litert_equals_tf_lite(quantized, perf200):
    path = tflite_model_path(quantized)  # the MLCommons reference files
    litert = TfliteRunner(path, interpreter="litert")
    assert TfliteRunner(path).engine == "litert"  # the default where ai-edge-litert is installed
    assert np.array_equal(litert.predict(perf200.images),
                          TfliteRunner(path, interpreter="tf.lite").predict(perf200.images))


def test_tflite_int8_input_bit_flip_is_exact():
    """pixel - 128 as int8 is the uint8 byte with its top bit flipped: the fast input path equals
    the general quantization formula for every byte value."""
    (inp,) = TfliteRunner(tflite_model_path(True)).inputs
    assert inp["quantization"] == (1.0, -128)
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    general = np.clip(np.round(pixels.astype(np.float32) / 1.0 - 128), -128, 127).astype(np.int8)
    assert np.array_equal(integer_input(pixels, inp["dtype"], *inp["quantization"]), general)


def test_torch_runner_computes_in_ieee_fp32():
    """cuDNN's TF32 default moved IC01's probabilities by 8e-3 on an H100 (.ci/cuda_check.py): the
    runner turns TF32 off while it predicts and restores the caller's setting after."""
    import torch

    from r8.runtimes.runners import TorchRunner

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return x.flatten(1)

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        TorchRunner(Probe()).predict(np.zeros((1, 2, 2, 1), np.float32))
        assert seen == [(False, False)]
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
