"""The calibration set every int8 backend shares.

Default: N training images of the data set (never test images), an equal number per class,
drawn with a fixed seed. Opt-in for CIFAR-10: the MLCommons list the reference TFLite model was
calibrated on, which indexes the *test* set and so overlaps the evaluation data (for
side-by-side comparison only).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r8.core.cache import build_once
from r8.core.errors import R8Error
from r8.data import Dataset, Split

SOURCES = ("train", "mlcommons-test-overlap")
DEFAULT_SIZE = 1000


def stratified_indices(labels: np.ndarray, n: int, seed: int, num_classes: int | None = None) -> np.ndarray:
    """``n`` indices, ``n / num_classes`` per class, drawn with ``seed``."""
    num_classes = num_classes or int(labels.max()) + 1
    smallest = min(int(np.sum(labels == c)) for c in range(num_classes))
    if n <= 0 or n % num_classes or n // num_classes > smallest:
        raise R8Error(f"calibration size {n} must be a positive multiple of {num_classes} classes, at most "
                      f"{num_classes * smallest} ({smallest} images in the smallest class)")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), n // num_classes, replace=False)
             for c in range(num_classes)]
    return np.sort(np.concatenate(picks))


def calibration_set(data: Dataset, n: int = DEFAULT_SIZE, seed: int = 0, source: str = "train",
                    num_classes: int | None = None) -> "CalibrationSet":
    """Build (once, into the cache) and load the calibration images; the ``.npz`` records the
    indices, the seed, the source split and the sha256 of the images."""
    path, split = calibration_file(data, n, seed, source, num_classes)
    saved = np.load(path)
    images = split.images[saved["indices"]]
    if hashlib.sha256(images.tobytes()).hexdigest() != str(saved["sha256"]):
        raise R8Error(f"{path}: its images no longer match the {split.name} split (sha256 differs)")
    return CalibrationSet(f"calibration-{source}", images, split.labels[saved["indices"]],
                          indices=saved["indices"], seed=int(saved["seed"]), source=source,
                          sha256=str(saved["sha256"]), data=data.name)


def calibration_file(data: Dataset, n: int = DEFAULT_SIZE, seed: int = 0, source: str = "train",
                     num_classes: int | None = None) -> tuple[Path, Split]:
    """The cached ``.npz`` of a calibration set (built on first use) and the split it indexes."""
    if source == "train":
        split, name = data.train, f"calibration/{data.key}/train-n{n}-seed{seed}.npz"
        make = lambda: stratified_indices(split.labels, n, seed, num_classes)  # noqa: E731
    elif source == "mlcommons-test-overlap":
        if data.root is None:
            raise R8Error(f"calibration source {source!r} is the MLCommons list of CIFAR-10 test images; "
                          f"data {data.name} has none")
        split, name = data.test, f"calibration/{data.key}/mlcommons-test-overlap.npz"
        make = lambda: np.load(data.root / "mlcommons" / "calibration_samples_idxs.npy")  # noqa: E731
    else:
        raise R8Error(f"unknown calibration source {source!r}; choose from {SOURCES}")

    def build(tmp: Path) -> None:
        idx = make()
        digest = hashlib.sha256(split.images[idx].tobytes()).hexdigest()
        with open(tmp, "wb") as f:
            np.savez(f, indices=idx, seed=seed, source=source, split=split.name, sha256=digest)

    return build_once(name, {"data": data.sha256, "n": n, "seed": seed, "source": source}, build), split


@dataclass(frozen=True)
class CalibrationSet(Split):
    indices: np.ndarray = None
    seed: int = 0
    source: str = "train"
    sha256: str = ""
    data: str = "cifar10"

    @property
    def tag(self) -> str:
        """Names the artifacts built from this set: ``cifar10-train-n1000-seed0``, ``cifar10-mlcommons-test-overlap``."""
        return f"{self.data}-" + (f"{self.source}-n{len(self.labels)}-seed{self.seed}" if self.source == "train"
                                  else self.source)

    def summary(self) -> dict:
        return {"data": self.data, "source": self.source, "n": len(self.labels), "seed": self.seed,
                "sha256": self.sha256, "overlaps_test_set": self.source != "train"}
