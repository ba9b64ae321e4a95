"""Artifacts built once into ``R8_CACHE_DIR`` and reused while their inputs are unchanged.

Each artifact sits beside a ``.key.json`` recording its inputs (their sha256s) and r8's own
source, the artifact's own sha256 (checked on every reuse: a damaged artifact is rebuilt, never
served), and what its build recorded (wall time, ...); a file lock makes concurrent builders
(pytest-xdist workers) wait instead of racing.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import sys
import time
from functools import cache
from pathlib import Path
from typing import Callable

from filelock import FileLock

from r8.core import paths
from r8.core.errors import R8Error


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Modules and whole subpackages (a trailing "/") that only present, time or check what was built:
# editing them rebuilds nothing. Every other module under r8/, in any subpackage, counts as shaping
# artifacts (a new one is safe).
PRESENTATION = {"__main__.py", "cli.py", "jobs/", "report/", "core/console.py", "metrics.py", "thresholds.py",
                "runtimes/runners.py", "runtimes/timing.py", "pytest_plugin.py", "gates.py", "rows.py",
                "core/environment.py", "runtimes/ranking.py", "results.py"}
R8_ROOT = Path(__file__).parent.parent


def shaping_modules(root: Path = R8_ROOT) -> list[Path]:
    """Every module under ``root`` (subpackages too) but the presentation ones."""
    def presents(rel: str) -> bool:
        return rel in PRESENTATION or any(rel.startswith(p) for p in PRESENTATION if p.endswith("/"))
    return sorted(f for f in root.rglob("*.py") if not presents(f.relative_to(root).as_posix()))


@cache
def code_hash() -> str:
    """Changes whenever a module that shapes an artifact changes, so a fixed bug never serves a
    stale artifact (and editing a report rebuilds nothing)."""
    h = hashlib.sha256()
    for f in shaping_modules():
        h.update(f.relative_to(R8_ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def ci_key(model_files: list[Path]) -> str:
    """What a CI cache of R8_CACHE_DIR is keyed by: the shaping code's hash and the model files'
    sha256, the same inputs the cache keys each artifact by (restoring another key's cache is safe
    too: each artifact is checked against its own key when served)."""
    missing = [str(f) for f in model_files if not Path(f).is_file()]
    if missing:
        raise R8Error(f"{', '.join(missing)}: no such model file (set R8_DATA_DIR, or pass --model)")
    models = hashlib.sha256("".join(sorted(sha256(f) for f in model_files)).encode()).hexdigest()[:16]
    return f"{code_hash()}-{models}"


def build_once(name: str, inputs: dict, build: Callable[[Path], dict | None]) -> Path:
    """Return ``R8_CACHE_DIR/name``, calling ``build(tmp_path)`` first unless a copy built from
    the same ``inputs`` (a JSON-able dict, hashed) and the same r8 code exists. ``build`` writes
    to ``tmp_path``; only a complete file is renamed into place. What ``build`` returns (JSON-able
    facts, e.g. timings) is kept with the wall time of the build: see :func:`build_facts`."""
    path = paths.cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    key = {"code": code_hash(), **inputs}
    key_file = _key_file(path)
    with FileLock(_lock_file(path)):
        status = _check(path, key_file, key)
        if status == "ok":
            return path
        if status in ("damaged", "unreadable"):  # said once: the rebuild below replaces it
            print(f"r8: warning: {path}: {status} ({_PROBLEMS[status]}); rebuilding it", file=sys.stderr)
        _remove_leftovers(path)
        facts = {}
        start = time.perf_counter()
        atomic_write(path, lambda tmp: facts.update(build(tmp) or {}))
        record = {"key": key, "sha256": sha256(path), "facts": {"build_s": time.perf_counter() - start, **facts}}
        atomic_write(key_file, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return path


_PROBLEMS = {"damaged": "its bytes are not what its build recorded",
             "unreadable": "its record is missing or damaged"}


def _check(path: Path, key_file: Path, key: dict) -> str:
    """``ok`` if the cached artifact was built from ``key`` and is still, byte for byte, what that
    build wrote (its sha256 is in the key file); else ``absent``, ``stale`` (built from other
    inputs or code), ``damaged`` (edited or truncated) or ``unreadable`` (its record): a rebuild,
    never a served file."""
    if not path.is_file():
        return "absent"
    record = _record(key_file)
    if record is None:
        return "unreadable"
    if record["key"] != key:
        return "stale"
    return "ok" if record["sha256"] == sha256(path) else "damaged"


def _record(key_file: Path) -> dict | None:
    """What a build recorded (``key``, ``sha256``, ``facts``), or None if the file is missing or damaged."""
    try:
        record = json.loads(key_file.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("key"), dict) and isinstance(record.get("sha256"), str)
    return record if ok else None


TMP = ".tmp"  # suffix of atomic_write's per-process folders
_LEFTOVER = re.compile(r"\.(?P<name>.+?)(?:\.key\.json)?\.\d+" + re.escape(TMP))


def _remove_leftovers(path: Path) -> None:
    """What a builder of ``path`` killed mid-write left (SIGKILL skips atomic_write's cleanup).
    Called under ``path``'s lock, so no live builder of it remains."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{TMP}"):
        if _LEFTOVER.fullmatch(tmp.name) and _LEFTOVER.fullmatch(tmp.name)["name"] == path.name:
            shutil.rmtree(tmp, ignore_errors=True)


def verify(root: Path | None = None) -> list[dict]:
    """Every artifact under ``root`` (default R8_CACHE_DIR) with its status: ``ok``; ``stale``
    (intact, built by other r8 code: rebuilt when next used); ``damaged`` (its bytes are not what
    its build recorded); ``missing`` (a record without its file); ``unreadable`` (a damaged
    record); ``unrecorded`` (a file r8 did not build, left alone); ``leftover`` (a killed build's
    temporary folder). A damaged, missing or unreadable artifact is rebuilt when next used."""
    root = Path(root or paths.cache_dir())
    rows, recorded = [], set()
    for key_file in sorted(root.rglob("*" + KEY)):
        path = key_file.with_name(key_file.name[:-len(KEY)])
        recorded |= {path, key_file, Path(_lock_file(path))}
        with FileLock(_lock_file(path)):
            rows.append({"path": str(path), "status": _status(path, key_file)})
    for f in sorted(root.rglob("*")):
        if _LEFTOVER.fullmatch(f.name):
            rows.append({"path": str(f), "status": "leftover"})
        elif f.is_file() and f not in recorded and f.suffix != ".lock" and not any(p.name.endswith(TMP) for p in f.parents):
            rows.append({"path": str(f), "status": "unrecorded"})
    return rows


def _status(path: Path, key_file: Path) -> str:
    record = _record(key_file)
    if record is None:
        return "unreadable"
    if not path.is_file():
        return "missing"
    if sha256(path) != record["sha256"]:
        return "damaged"
    return "ok" if record["key"].get("code") == code_hash() else "stale"


def clean(root: Path | None = None) -> tuple[int, int]:
    """Remove every artifact r8 built under ``root`` (with its record and lock) and every
    leftover; files r8 did not build stay. Returns (artifacts removed, bytes freed)."""
    root = Path(root or paths.cache_dir())
    removed = freed = 0
    for row in verify(root):
        path = Path(row["path"])
        if row["status"] == "leftover":
            shutil.rmtree(path, ignore_errors=True)
        elif row["status"] != "unrecorded":
            with FileLock(_lock_file(path)):
                freed += path.stat().st_size if path.is_file() else 0
                removed += path.is_file()
                path.unlink(missing_ok=True)
                _key_file(path).unlink(missing_ok=True)
            Path(_lock_file(path)).unlink(missing_ok=True)
    for lock in root.rglob("*.lock"):  # of builds that never completed
        lock.unlink()
    for d in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    return removed, freed


def build_facts(path: Path) -> dict:
    """What the build of a cached artifact recorded: ``build_s`` and whatever ``build`` returned."""
    return json.loads(_key_file(path).read_text())["facts"]


KEY = ".key.json"


def _key_file(path: Path) -> Path:
    return path.with_name(path.name + KEY)


def _lock_file(path: Path) -> str:
    return str(path) + ".lock"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename tmp to ``path``, so a crash never leaves a half file. tmp
    has ``path``'s own name, in a hidden per-process folder beside it: some writers record the
    file's name inside the file (a TorchScript archive's record prefix), and a per-process name
    would make two builds of the same artifact differ."""
    tmp_dir = path.with_name(f".{path.name}.{os.getpid()}{TMP}")
    tmp_dir.mkdir(exist_ok=True)
    try:
        write(tmp_dir / path.name)
        os.replace(tmp_dir / path.name, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
