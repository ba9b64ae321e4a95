"""What a command-line run shows: progress bars and r8's own lines, unless ``-v/--verbose``.

Three sources of noise are cut in quiet mode: Python warnings (deprecations), Python logging
below ERROR (torch's ``_pytree`` notice, ORT's and tf2onnx's chatter), and what the C++ of
TensorFlow, absl and LiteRT write straight to file descriptor 2 while they start up
(:func:`native_stderr_quiet` around those calls). The library used from Python stays as it was.
"""

import contextlib
import contextvars
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager

# Within a command-line run (:func:`run`): "quiet" unless verbose, "verbose" with -v; unset outside one.
MODE: contextvars.ContextVar[str | None] = contextvars.ContextVar("r8_console_mode", default=None)
LOGGERS = ("", "torch", "tensorflow", "tf2onnx", "absl")  # "": the root logger
TF_LOG = "TF_CPP_MIN_LOG_LEVEL"


@contextmanager
def run(verbose: bool):
    """One command-line run's console: quiet unless ``verbose``. Warning filters, logging levels,
    the environment and the quiet flag are as before once the run ends, so nothing outlives it
    (the CLI called twice in one process, as the tests do, starts from the same state)."""
    levels, tf_log = {name: logging.getLogger(name).level for name in LOGGERS}, os.environ.get(TF_LOG)
    token = MODE.set("verbose" if verbose else "quiet")
    try:
        with warnings.catch_warnings():
            if not verbose:
                os.environ.setdefault(TF_LOG, "3")  # read when TensorFlow loads
                warnings.filterwarnings("ignore")
                for name in LOGGERS:
                    logging.getLogger(name).setLevel(logging.ERROR)
            yield
    finally:
        MODE.reset(token)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if tf_log is None:
            os.environ.pop(TF_LOG, None)
        else:
            os.environ[TF_LOG] = tf_log


@contextmanager
def native_stderr_quiet():
    """In quiet mode, send what native code writes to fd 2 to /dev/null for the duration."""
    if MODE.get() != "quiet":
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
def tf_converter_quiet():
    """In quiet mode, what TensorFlow's Keras-to-.tflite converter says: its C++ lines on fd 2 and
    the summary of the SavedModel it exports on the way (endpoints, captures), which Keras prints
    to stdout, where only r8's own lines belong."""
    if MODE.get() != "quiet":
        yield
        return
    with native_stderr_quiet(), contextlib.redirect_stdout(io.StringIO()):
        yield


@contextmanager
def all_tensors_kept():
    """LiteRT warns (a UserWarning) at every interpreter that keeps every tensor; r8's do on purpose
    (the LiteRT quantizer's calibrator and its check of the calibrated ranges, and the op-by-op
    comparison with TFLM), so the warning says nothing to the user and stays off their pytest
    summary."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Warning: Enabling `experimental_preserve_all_tensors`", UserWarning)
        yield


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
            if MODE.get() == "verbose" and captured[0]:
                sys.stderr.write(captured[0])


def on_terminal() -> bool:
    """Progress bars belong on a terminal; in a CI log their redraws are noise."""
    return sys.stderr.isatty()


def progress(items, desc: str, enabled: bool = True, step: bool = True, **bar):
    """``items`` with progress shown: a tqdm bar on a terminal; in a log, one line per finished item
    of a ``step`` loop (a config, a backend, a file) and nothing for an inner loop (the batches of one
    prediction), so a CI log reads as a list of steps."""
    if not enabled:
        return items
    if on_terminal():
        from tqdm import tqdm

        return tqdm(items, desc=desc, leave=step, **bar)
    return _log_steps(items, desc) if step else items


def _log_steps(items, desc: str):
    items = list(items)
    start = time.perf_counter()
    for n, item in enumerate(items, 1):
        yield item
        print(f"{desc}: {n}/{len(items)} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


def note(text: str) -> None:
    """A line beside the progress bars (above them on a terminal), on stderr."""
    if on_terminal():
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)
