"""``python -m r8 ...`` in a subprocess, as a user runs it (the suite's one helper for the CLI)."""

import subprocess
import sys


def r8(*args, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r8", *map(str, args)], capture_output=True, text=True,
                          check=check, **kw)
