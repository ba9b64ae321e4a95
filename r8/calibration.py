"""The calibration set every int8 backend shares.

Default: N training images (never test images), an equal number per class, drawn with a fixed
seed. Opt-in: the MLCommons list the reference TFLite model was calibrated on, which indexes the
*test* set and so overlaps the evaluation data (for side-by-side comparison only).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r8 import paths
from r8.cache import build_once
from r8.data import Split, load_split
from r8.errors import R8Error

SOURCES = ("train", "mlcommons-test-overlap")


def stratified_indices(labels: np.ndarray, n: int, seed: int, num_classes: int = 10) -> np.ndarray:
    if n <= 0 or n % num_classes or n > len(labels):
        raise R8Error(f"calibration size {n} must be a positive multiple of {num_classes} classes, "
                      f"at most {len(labels)}")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), n // num_classes, replace=False)
             for c in range(num_classes)]
    return np.sort(np.concatenate(picks))


def calibration_set(n: int = 1000, seed: int = 0, source: str = "train") -> "CalibrationSet":
    """Build (once, into the cache) and load the calibration images; the ``.npz`` records the
    indices, the seed, the source split and the sha256 of the images."""
    path, split = calibration_file(n, seed, source)
    saved = np.load(path)
    images = split.images[saved["indices"]]
    if hashlib.sha256(images.tobytes()).hexdigest() != str(saved["sha256"]):
        raise R8Error(f"{path}: its images no longer match the {split.name} split (sha256 differs)")
    return CalibrationSet(f"calibration-{source}", images, split.labels[saved["indices"]],
                          indices=saved["indices"], seed=int(saved["seed"]), source=source,
                          sha256=str(saved["sha256"]))


def calibration_file(n: int = 1000, seed: int = 0, source: str = "train") -> tuple[Path, Split]:
    """The cached ``.npz`` of a calibration set (built on first use) and the split it indexes."""
    if source == "train":
        split, name = load_split("train"), f"calibration/train-n{n}-seed{seed}.npz"
        make = lambda: stratified_indices(split.labels, n, seed)  # noqa: E731
    elif source == "mlcommons-test-overlap":
        split, name = load_split("test"), "calibration/mlcommons-test-overlap.npz"
        make = lambda: np.load(paths.mlcommons_dir() / "calibration_samples_idxs.npy")  # noqa: E731
    else:
        raise R8Error(f"unknown calibration source {source!r}; choose from {SOURCES}")

    def build(tmp: Path) -> None:
        idx = make()
        digest = hashlib.sha256(split.images[idx].tobytes()).hexdigest()
        with open(tmp, "wb") as f:
            np.savez(f, indices=idx, seed=seed, source=source, split=split.name, sha256=digest)

    return build_once(name, {"n": n, "seed": seed, "source": source}, build), split


@dataclass(frozen=True)
class CalibrationSet(Split):
    indices: np.ndarray = None
    seed: int = 0
    source: str = "train"
    sha256: str = ""

    @property
    def tag(self) -> str:
        """Names the artifacts built from this set: ``train-n1000-seed0``, ``mlcommons-test-overlap``."""
        return f"{self.source}-n{len(self.labels)}-seed{self.seed}" if self.source == "train" else self.source

    def summary(self) -> dict:
        return {"source": self.source, "n": len(self.labels), "seed": self.seed,
                "sha256": self.sha256, "overlaps_test_set": self.source != "train"}
