"""Artifacts built once into ``R8_CACHE_DIR`` and reused while their inputs are unchanged.

Each artifact sits beside a ``.key.json`` recording its inputs (their sha256s) and r8's own
source, the artifact's own sha256 (checked on every reuse: a damaged artifact is rebuilt, never
served), and what its build recorded (wall time, ...); a file lock makes concurrent builders
(pytest-xdist workers) wait instead of racing.
"""

import hashlib
import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Callable

from filelock import FileLock

from r8 import paths


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Modules that only present, time or check what was built: editing them rebuilds nothing. Every
# other module under r8/, in any subpackage, counts as shaping artifacts (a new one is safe).
PRESENTATION = {"__main__.py", "cli.py", "jobs.py", "report.py", "index.py", "console.py", "metrics.py",
                "thresholds.py", "runners.py", "bench.py", "pytest_plugin.py", "gates.py"}


def shaping_modules(root: Path = Path(__file__).parent) -> list[Path]:
    """Every module under ``root`` (subpackages too) but the presentation ones."""
    return sorted(f for f in root.rglob("*.py") if f.relative_to(root).as_posix() not in PRESENTATION)


@cache
def code_hash() -> str:
    """Changes whenever a module that shapes an artifact changes, so a fixed bug never serves a
    stale artifact (and editing a report rebuilds nothing)."""
    h = hashlib.sha256()
    root = Path(__file__).parent
    for f in shaping_modules():
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def build_once(name: str, inputs: dict, build: Callable[[Path], dict | None]) -> Path:
    """Return ``R8_CACHE_DIR/name``, calling ``build(tmp_path)`` first unless a copy built from
    the same ``inputs`` (a JSON-able dict, hashed) and the same r8 code exists. ``build`` writes
    to ``tmp_path``; only a complete file is renamed into place. What ``build`` returns (JSON-able
    facts, e.g. timings) is kept with the wall time of the build: see :func:`build_facts`."""
    path = paths.cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    key = {"code": code_hash(), **inputs}
    key_file = _key_file(path)
    with FileLock(str(path) + ".lock"):
        if _intact(path, key_file, key):
            return path
        facts = {}
        start = time.perf_counter()
        atomic_write(path, lambda tmp: facts.update(build(tmp) or {}))
        record = {"key": key, "sha256": sha256(path), "facts": {"build_s": time.perf_counter() - start, **facts}}
        atomic_write(key_file, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return path


def _intact(path: Path, key_file: Path, key: dict) -> bool:
    """Whether the cached artifact was built from ``key`` and is still, byte for byte, what that
    build wrote (its sha256 is in the key file): a damaged, edited or truncated artifact, or an
    unreadable key file, means a rebuild, never a served file."""
    if not (path.is_file() and key_file.is_file()):
        return False
    try:
        record = json.loads(key_file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("key") == key and record.get("sha256") == sha256(path)


def build_facts(path: Path) -> dict:
    """What the build of a cached artifact recorded: ``build_s`` and whatever ``build`` returned."""
    return json.loads(_key_file(path).read_text())["facts"]


def _key_file(path: Path) -> Path:
    return path.with_name(path.name + ".key.json")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename tmp to ``path``, so a crash never leaves a half file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
