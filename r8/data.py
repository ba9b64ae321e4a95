"""CIFAR-10 (official python layout, loaded and downloaded through torchvision), the MLPerf
Tiny perf sets, the EEMBC ``.bin`` format, and the reference Keras model's download."""

import csv
import os
import pickle
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import calculate_md5, download_and_extract_archive, download_url

from r8 import paths
from r8.errors import R8Error

CIFAR_FILES = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The MLCommons tiny reference files, as published (the same files as in R8_DATA_DIR/mlcommons):
# name -> (path under MLCOMMONS_URL, md5).
MLCOMMONS_URL = "https://github.com/mlcommons/tiny/raw/1afd2c98/benchmark/training/image_classification"
MLCOMMONS_FILES = {
    "pretrainedResnet.h5": ("trained_models/pretrainedResnet.h5", "f3f7f4864d6798030822cac7a95f8301"),
    "pretrainedResnet.tflite": ("trained_models/pretrainedResnet.tflite", "6ba6fa3ed68c479ef7be253ba3f0b789"),
    "pretrainedResnet_quant.tflite": ("trained_models/pretrainedResnet_quant.tflite",
                                      "2d6dd48722471313e4c4528249205ae3"),
    "perf_samples_idxs.npy": ("perf_samples_idxs.npy", "c806ed872903de072e7ac9541291b01c"),
}
PERF_SETS = {"perf200": "perf_samples_idxs.npy", "perf200_v0.5": "perf_samples_idxs_v0.5.npy"}
SUBSETS = ("test", *PERF_SETS)


@dataclass(frozen=True)
class Split:
    name: str
    images: np.ndarray  # (N, 32, 32, 3) uint8, NHWC, raw pixels, C-contiguous
    labels: np.ndarray  # (N,) int64

    def take(self, name: str, idx: np.ndarray) -> "Split":
        return Split(name, self.images[idx], self.labels[idx])


def verify_cifar10(root: str | os.PathLike) -> Path:
    """Check every CIFAR-10 file against the md5 torchvision knows; return the batches folder."""
    folder = Path(root) / CIFAR10.base_folder
    problems = []
    for name, md5 in CIFAR_FILES:
        f = folder / name
        if not f.is_file():
            problems.append(f"{f}: missing")
        elif (got := calculate_md5(str(f))) != md5:
            problems.append(f"{f}: md5 {got} != {md5} (truncated or corrupt, {f.stat().st_size} bytes)")
    if problems:
        raise R8Error("CIFAR-10 is not usable:\n  " + "\n  ".join(problems)
                      + f"\nSet R8_DATA_DIR or run `python -m r8 download` to fetch it into {root}.")
    return folder


@cache
def _load(root: Path, train: bool) -> Split:
    verify_cifar10(root)
    ds = CIFAR10(str(root), train=train, download=False)
    # torchvision's ``data`` is an NHWC view of NCHW memory: made C-contiguous, every runtime
    # pays its own layout conversion (a view in NCHW memory made NCHW runtimes' inputs free, and
    # cost LiteRT 14 us per call at batch 1 to copy the strided array)
    images = np.ascontiguousarray(ds.data)
    return Split("train" if train else "test", images, np.asarray(ds.targets, dtype=np.int64))


def load_split(split: str, root: str | os.PathLike | None = None) -> Split:
    """``train`` (50k), ``test`` (10k) or a perf set of the test images (see ``SUBSETS``)."""
    root = Path(root or paths.data_dir()).resolve()
    if split == "train":
        return _load(root, True)
    test = _load(root, False)
    if split == "test":
        return test
    if split not in PERF_SETS:
        raise R8Error(f"unknown subset {split!r}; choose from {('train', *SUBSETS)}")
    return test.take(split, perf_indices(split, root))


def perf_indices(name: str, root: Path) -> np.ndarray:
    f = root / "mlcommons" / PERF_SETS[name]
    try:
        idx = np.load(f)
    except (OSError, ValueError) as e:
        raise R8Error(f"{f}: cannot read perf-set indices ({e})") from None
    if idx.ndim != 1 or idx.min() < 0 or idx.max() >= 10_000:
        raise R8Error(f"{f}: not a list of test-set indices (shape {idx.shape})")
    return idx.astype(np.int64)


def cifar_test_filenames(root: str | os.PathLike | None = None) -> list[str]:
    """CIFAR file names of the 10k test images (torchvision does not keep them)."""
    folder = verify_cifar10(root or paths.data_dir())
    with open(folder / "test_batch", "rb") as f:
        return pickle.load(f, encoding="latin1")["filenames"]


def read_eembc_bins(folder: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The EEMBC runner format: raw 32x32x3 HWC uint8 ``.bin`` files + ``y_labels.csv``
    (``name,num_classes,label``). Returns (names, images NHWC, labels) in csv order."""
    folder = Path(folder)
    labels_csv = folder / "y_labels.csv"
    if not labels_csv.is_file():
        raise R8Error(f"{labels_csv}: missing")
    with open(labels_csv, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    names, images, labels = [], [], []
    for row in rows:
        if len(row) != 3:
            raise R8Error(f"{labels_csv}: expected 'name,classes,label', got {row}")
        raw = (folder / row[0]).read_bytes() if (folder / row[0]).is_file() else None
        if raw is None or len(raw) != 32 * 32 * 3:
            raise R8Error(f"{folder / row[0]}: expected 3072 bytes, got {'no file' if raw is None else len(raw)}")
        names.append(row[0])
        images.append(np.frombuffer(raw, np.uint8).reshape(32, 32, 3))
        labels.append(int(row[2]))
    return names, np.stack(images), np.asarray(labels, dtype=np.int64)


def _fetch(fetch, url: str, dest: Path, leftover: Path) -> None:
    """Run a torchvision download; on failure remove what it leaves behind and say what failed."""
    try:
        fetch()
    except Exception as e:  # torchvision raises RuntimeError, URLError or OSError alike
        leftover.unlink(missing_ok=True)
        raise R8Error(f"download of {url} into {dest} failed: {e}") from None


def download_cifar10(root: str | os.PathLike, url: str = CIFAR10.url, md5: str = CIFAR10.tgz_md5) -> Path:
    """Fetch and extract CIFAR-10 unless a verified copy is already there."""
    root = Path(root)
    try:
        return verify_cifar10(root)
    except R8Error:
        pass
    _fetch(lambda: download_and_extract_archive(url, str(root), filename=CIFAR10.filename, md5=md5,
                                                remove_finished=True), url, root, root / CIFAR10.filename)
    return verify_cifar10(root)


def download_mlcommons(dest: str | os.PathLike, base_url: str = MLCOMMONS_URL) -> Path:
    """Fetch the reference model files and the perf-set indices into ``dest``; each is kept
    only if its md5 matches, and a verified copy already there is not fetched again."""
    dest = Path(dest)
    for name, (rel, md5) in MLCOMMONS_FILES.items():
        url = f"{base_url}/{rel}"
        _fetch(lambda: download_url(url, str(dest), filename=name, md5=md5), url, dest, dest / name)
    return dest
