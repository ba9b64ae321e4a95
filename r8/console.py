"""What a command-line run shows: progress bars and r8's own lines, unless ``-v/--verbose``.

Three sources of noise are cut in quiet mode: Python warnings (deprecations), Python logging
below ERROR (torch's ``_pytree`` notice, ORT's and tf2onnx's chatter), and what the C++ of
TensorFlow, absl and LiteRT write straight to file descriptor 2 while they start up
(:func:`native_stderr_quiet` around those calls). The library used from Python stays as it was.
"""

import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager

_quiet = False
_verbose = False


def configure(verbose: bool) -> None:
    """Called once by the CLI: quiet unless ``verbose``."""
    global _quiet, _verbose
    _quiet, _verbose = not verbose, verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("torch", "tensorflow", "tf2onnx", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def native_stderr_quiet():
    """In quiet mode, send what native code writes to fd 2 to /dev/null for the duration."""
    if not _quiet:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextmanager
def native_output_captured():
    """Capture what native code writes to fd 1 and 2 meanwhile (TFLM prints its allocation notes
    and errors there from C++): the text is appended to the yielded list on exit, and echoed to
    stderr under ``-v``."""
    sys.stdout.flush()
    sys.stderr.flush()
    captured: list[str] = []
    with tempfile.TemporaryFile() as f:
        saved = os.dup(1), os.dup(2)
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            f.seek(0)
            captured.append(f.read().decode(errors="replace"))
            if _verbose and captured[0]:
                sys.stderr.write(captured[0])
