"""One ``predict(images) -> probabilities`` interface over every runtime.

``images`` is always a uint8 NHWC batch of raw CIFAR pixels; each runner does its own layout
and dtype conversion, so accuracy and speed are measured on identical inputs.
"""

import os
from pathlib import Path

import numpy as np
import torch

from r8.errors import R8Error


class TorchRunner:
    def __init__(self, module: torch.nn.Module, name: str = "torch"):
        self.module, self.name = module, name

    def predict(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            return self.module(x).numpy()


class KerasRunner:
    """The reference: the ``.h5`` loaded by Keras itself (needs tensorflow)."""

    def __init__(self, h5: str | os.PathLike, name: str = "keras"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up chatter out
        import keras  # optional: only the suite and `evaluate --backend keras` need it

        if not Path(h5).is_file():
            raise R8Error(f"{h5}: file not found")
        self.model, self.name = keras.models.load_model(h5, compile=False), name

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model([images.astype(np.float32)], training=False))
