"""The Keras reference side (optional: tensorflow is a test dependency, never the converter's).

Two things bite here. Importing triton after tensorflow (torch loads triton for
``torch.compile`` and ``torch.export.load``) crashes the process with SIGSEGV: both wheels bundle
their own LLVM, and libtensorflow_framework.so.2 exports its LLVM symbols, to which triton's
static initialisers then bind. So every r8 path imports triton first, and ``import r8`` after
tensorflow makes triton unavailable instead (:func:`guard_triton`). And Keras 3 cannot load
every Keras 2 ``.h5`` (DepthwiseConv2D fails with a TypeError), so a Keras 2 file is loaded
with ``tf-keras``, the Keras 2 line.
"""

import os
import sys
import warnings

from r8.core.console import native_stderr_quiet


def guard_triton() -> None:
    """If tensorflow is already imported and triton is not, loading triton later would crash the
    process: make triton unavailable instead, so torch takes its no-triton path (all the CPU
    needs: ``torch.export.load``, ``torch.compile`` and torchao work without it)."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        warnings.warn("tensorflow was imported before triton, and loading triton now would crash the "
                      "process; r8 disabled triton here (import torch and triton first to keep it)")
        sys.modules["triton"] = None


def import_tensorflow():
    """``import tensorflow`` that cannot break a later triton import, with TF's start-up chatter off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    guard_triton()
    with native_stderr_quiet():  # TF and absl write start-up lines to fd 2 whatever the log level
        try:
            import triton  # noqa: F401  must come before tensorflow (see the module docstring)
        except ImportError:
            pass
        import tensorflow

        tensorflow.config.list_physical_devices()  # the CUDA probe ("failed call to cuInit") now
    return tensorflow


def keras_for(path: str | os.PathLike):
    """The Keras package that reads the model file ``path``: tf-keras for one written by Keras 2.x."""
    from r8.frontends.keras.archive import keras_version  # also the R8Error for a missing or unreadable file

    version = keras_version(path)
    import_tensorflow()
    if version.startswith("2."):
        try:
            import tf_keras

            return tf_keras
        except ImportError:
            pass  # Keras 3 reads most Keras 2 files, the MLPerf Tiny ResNet8 among them
    import keras

    return keras


def load_keras_model(h5: str | os.PathLike):
    keras = keras_for(h5)
    with native_stderr_quiet():
        return keras.models.load_model(h5, compile=False)
