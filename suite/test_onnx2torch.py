"""The fallback conversion route (tf2onnx -> onnx2torch) held to the gates of r8's own converter."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from file_facts import onnx2torch_program
from numpy.testing import assert_allclose

from r8 import artifacts
from r8.frontends.convert import load_program
from r8.metrics import agreement, predict, top1
from r8.runtimes.runners import TorchRunner

PROB_ATOL = 1e-5  # the same gate as r8's own route
MIN_FP32_TOP1 = 0.85


@pytest.fixture(scope="session")
def onnx2torch_probs(ic01, test_split):
    return predict(TorchRunner(artifacts.onnx2torch_fp32(ic01), nhwc=True), test_split.images, progress=False)


def test_parity_10k(onnx2torch_probs, keras_probs, report):
    diff = float(np.abs(onnx2torch_probs - keras_probs).max())
    report("parity keras-vs-onnx2torch max|dp|, argmax agreement (10k)",
           f"{diff:.2e}, {agreement(onnx2torch_probs, keras_probs):.4%}")
    assert diff <= PROB_ATOL and agreement(onnx2torch_probs, keras_probs) == 1.0


@pytest.mark.accuracy
def test_fp32_top1(onnx2torch_probs, test_split, report):
    acc = top1(onnx2torch_probs, test_split.labels)
    report("fp32 top-1 onnx2torch (10k)", f"{acc:.2%}")
    assert acc >= MIN_FP32_TOP1


def test_saved_program_loads_without_r8_at_any_batch(ic01, onnx2torch_probs, test_split, tmp_path):
    """torch.export survives once onnx2torch's constant Reshape is folded (see r8.frontends.onnx_route)."""
    path = onnx2torch_program(ic01)
    code = ("import sys, numpy as np, torch; sys.modules['r8'] = None\n"
            f"m = torch.export.load(open({str(path)!r}, 'rb')).module()\n"
            f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})).float()\n"
            f"np.save({str(tmp_path / 'y1.npy')!r}, m(x[:1]).detach().numpy())\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, m(x).detach().numpy())\n")
    np.save(tmp_path / "x.npy", test_split.images[:300])
    subprocess.run([sys.executable, "-c", code], check=True)
    # another batch size may pick another conv algorithm: float32 rounding, well inside the gate
    assert_allclose(np.load(tmp_path / "y.npy"), onnx2torch_probs[:300], rtol=0, atol=PROB_ATOL)
    assert_allclose(np.load(tmp_path / "y1.npy"), onnx2torch_probs[:1], rtol=0, atol=PROB_ATOL)


def test_cli_convert_route(h5_path, onnx2torch_probs, test_split, tmp_path):
    out = tmp_path / "o2t.pt"
    done = subprocess.run([sys.executable, "-m", "r8", "convert", "--route", "onnx2torch", "--model", str(h5_path),
                           "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with torch.inference_mode():
        probs = load_program(out)(torch.from_numpy(test_split.images[:64]).float()).numpy()
    assert_allclose(probs, onnx2torch_probs[:64], rtol=0, atol=PROB_ATOL)
