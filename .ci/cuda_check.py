"""The GPU checks CI cannot run (its machines have no GPU), for a session lent a CUDA machine.

    python .ci/cuda_check.py prepare DIR   # here: IC01 .h5, the CIFAR-10 test batch, Keras's probabilities
    python .ci/cuda_check.py run DIR       # there (torch + h5py only): prints one JSON object

``run`` converts the .h5 with r8 (h5py, no TensorFlow), checks the converted model on CUDA against
Keras on the 10k test images (the suite's test_cuda_parity_and_top1: max |dp| <= 1e-5, argmax
agreement 100 %, top-1 >= 85 %) and times the benchmark's torch-cuda row at batch 1 and 256
(torch.utils.benchmark medians; the input copied from host memory each call, as TorchRunner does).
The full CIFAR-10 set is too large to send to that machine, so the test itself cannot run there.
"""

import contextlib
import json
import pickle
import shutil
import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np


def prepare(out: Path) -> None:
    from r8.core import paths
    from r8.data import load_split
    from r8.metrics import predict
    from r8.runtimes.runners import KerasRunner

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(paths.keras_model_path(), out / "model.h5")
    shutil.copy(paths.data_dir() / "cifar-10-batches-py" / "test_batch", out / "test_batch")
    probs = predict(KerasRunner(paths.keras_model_path()), load_split("test").images, progress=False)
    np.save(out / "keras_probs.npy", probs)


def run(folder: Path, device: str = "cuda") -> dict:
    import torch
    import torch.utils.benchmark as tb

    from r8.frontends.convert import convert
    from r8.metrics import agreement, predict, top1
    from r8.runtimes.runners import TorchRunner

    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    images = np.ascontiguousarray(batch["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    labels = np.asarray(batch["labels"])
    keras = np.load(folder / "keras_probs.npy")
    model = convert(folder / "model.h5")
    runner = TorchRunner(model, device=device)
    probs = predict(runner, images, progress=False)
    with patch("r8.runtimes.runners.ieee_fp32", contextlib.nullcontext):  # torch's default: TF32 convolutions
        tf32 = predict(runner, images, progress=False)
    diff = float(np.abs(probs - keras).max())
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else device, "torch": torch.__version__, "images": len(images),
              "max_abs_diff": diff, "argmax_agreement": agreement(probs, keras), "top1": top1(probs, labels),
              "keras_top1": top1(keras, labels), "tf32_max_abs_diff": float(np.abs(tf32 - keras).max()),
              "tf32_argmax_agreement": agreement(tf32, keras)}
    result["passed"] = diff <= 1e-5 and result["argmax_agreement"] == 1.0 and result["top1"] >= 0.85
    for batch_size in (1, 256):
        x = images[:batch_size]
        timer = tb.Timer("runner.predict(x)", globals={"runner": runner, "x": x})
        m = timer.blocked_autorange(min_run_time=2.0)
        result[f"ms_bs{batch_size}"] = m.median * 1e3
        result[f"img_per_s_bs{batch_size}"] = batch_size / m.median
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    verb, folder = sys.argv[1], Path(sys.argv[2])
    if verb == "prepare":
        prepare(folder)
    else:
        print(json.dumps(run(folder, *sys.argv[3:]), indent=1))  # a device name after DIR: e.g. cpu, to try it here
