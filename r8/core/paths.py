"""Where r8 finds its inputs and puts what it builds.

``R8_DATA_DIR`` holds ``cifar-10-batches-py/`` and ``mlcommons/`` and may be read-only;
``R8_CACHE_DIR`` receives every built artifact. Both default to a user cache dir.
"""

import os
from pathlib import Path


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "r8"


def data_dir() -> Path:
    return Path(os.environ.get("R8_DATA_DIR") or _user_cache() / "data")


def cache_dir() -> Path:
    return Path(os.environ.get("R8_CACHE_DIR") or _user_cache() / "artifacts")


def mlcommons_dir() -> Path:
    return data_dir() / "mlcommons"


def keras_model_path() -> Path:
    return mlcommons_dir() / "pretrainedResnet.h5"


