"""Batched prediction with a progress bar, and accuracy figures."""

import numpy as np
from tqdm import tqdm

from r8.data import Split


def predict(runner, images: np.ndarray, batch_size: int = 500, progress: bool = True) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"{runner.name}", unit="batch",
                      disable=not progress, leave=False):
        out.append(runner.predict(images[start:start + batch_size]))
    return np.concatenate(out)


def top1(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def per_class(probs: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> list[float]:
    hit = probs.argmax(1) == labels
    return [float(hit[labels == c].mean()) for c in range(num_classes)]


def evaluate(runner, split: Split, progress: bool = True) -> dict:
    """The ``evaluate --json`` record: backend, subset, n, top1 and per-class top-1 (fractions)."""
    probs = predict(runner, split.images, progress=progress)
    return {"backend": runner.name, "subset": split.name, "n": len(split.labels),
            "top1": top1(probs, split.labels), "per_class": per_class(probs, split.labels)}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows whose argmax (predicted class) is the same in both outputs."""
    return float((a.argmax(1) == b.argmax(1)).mean())
