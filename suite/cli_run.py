"""``python -m r8 ...`` in a subprocess, as a user runs it (the suite's one helper for the CLI), or
in this process, for a refusal whose message is the check."""

import contextlib
import io
import subprocess
import sys


def r8(*args, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r8", *map(str, args)], capture_output=True, text=True,
                          check=check, **kw)


def r8_here(*args, check: bool = True) -> subprocess.CompletedProcess:
    """``r8.cli.main`` on ``args`` in this process: the code, exit status and output of ``python -m
    r8`` without a new interpreter loading torch and TensorFlow again (about 4 s a call on 2 cores)."""
    from r8.cli import main

    args, out, err = list(map(str, args)), io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as e:  # argparse's usage errors, and a search whose budget is not met
            code = e.code
    done = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    if check:
        done.check_returncode()
    return done
