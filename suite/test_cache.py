"""The artifact cache serves only what it built: a reused artifact's bytes are checked against
the sha256 its build recorded; a damaged artifact or key file means a rebuild, never an error or a
served file."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_run import r8

from r8.core.cache import build_once, verify


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("R8_CACHE_DIR", str(tmp_path))
    builds = []

    def build(tmp):
        builds.append(1)
        tmp.write_bytes(bytes(range(256)) * 64)  # 16 KiB, like a (tiny) model file

    return lambda: build_once("m/model.onnx", {"model": "abc"}, build), builds


def test_an_intact_artifact_is_reused(cache):
    get, builds = cache
    assert get().read_bytes() == get().read_bytes() and len(builds) == 1


def test_a_flipped_byte_is_rebuilt_not_served(cache, capsys):
    get, builds = cache
    path = get()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle: the file still has its size and format
    path.write_bytes(bytes(data))
    assert get().read_bytes() == bytes(range(256)) * 64 and len(builds) == 2
    get()  # rebuilt once: the warning is not repeated
    assert capsys.readouterr().err.count(f"r8: warning: {path}: damaged") == 1


@pytest.mark.parametrize("damage", ["not-json", "empty", "a-list", "no-sha256"])
def test_a_damaged_key_file_means_a_rebuild(cache, damage, capsys):
    get, builds = cache
    path = get()
    key_file = path.with_name(path.name + ".key.json")
    record = json.loads(key_file.read_text())
    key_file.write_text({"not-json": "{key: ", "empty": "", "a-list": "[]",
                         "no-sha256": json.dumps({"key": record["key"]})}[damage])
    get()
    assert len(builds) == 2 and json.loads(key_file.read_text())["sha256"] == record["sha256"]
    assert f"r8: warning: {path}: unreadable" in capsys.readouterr().err


def test_a_truncated_artifact_is_rebuilt(cache):
    get, builds = cache
    path = get()
    path.write_bytes(path.read_bytes()[:100])
    assert get().stat().st_size == 256 * 64 and len(builds) == 2


# A builder in its own process: writes part of the artifact, says so, waits, writes the rest.
BUILDER = """
import hashlib, os, sys, time
from pathlib import Path
from r8.core.cache import build_once

started, pause, log = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])

def build(tmp):
    with log.open("a") as f:
        f.write(f"{os.getpid()}\\n")
    with open(tmp, "wb") as f:
        f.write(b"built by %d: " % os.getpid())
        f.flush()
        started.touch()
        time.sleep(pause)
        f.write(bytes(range(256)) * 64)

print(hashlib.sha256(build_once("m/model.bin", {"model": "abc"}, build).read_bytes()).hexdigest())
"""


def builder(tmp_path, pause: float) -> subprocess.Popen:
    started = tmp_path / f"started-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-c", BUILDER, started, str(pause), tmp_path / "builds.log"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "R8_CACHE_DIR": str(tmp_path / "cache")})
    deadline = time.monotonic() + 60
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_a_build_killed_midway_leaves_nothing_and_the_next_run_completes(tmp_path):
    proc = builder(tmp_path, pause=600)
    os.kill(proc.pid, signal.SIGKILL)  # mid-build: half the artifact is written to its temporary file
    proc.wait()
    artifact = tmp_path / "cache" / "m" / "model.bin"
    assert not artifact.exists() and not artifact.with_name("model.bin.key.json").exists()
    assert [r["status"] for r in verify(tmp_path / "cache")] == ["leftover"]  # the killed build's folder

    assert builder(tmp_path, pause=0).wait() == 0
    assert artifact.read_bytes().endswith(bytes(range(256)) * 64)
    assert [r["status"] for r in verify(tmp_path / "cache")] == ["ok"]  # the leftover went with the rebuild


def test_two_processes_building_one_artifact_build_it_once(tmp_path):
    procs = [builder(tmp_path, pause=1.0) for _ in range(2)]  # the second starts while the first builds
    digests = {proc.communicate()[0].strip() for proc in procs}
    builds = (tmp_path / "builds.log").read_text().split()
    assert len(builds) == 1 and len(digests) == 1  # one build; both were handed its bytes


def test_cache_verify_and_clean_from_the_command_line(cache, tmp_path):
    get, _ = cache
    path = get()
    assert r8("cache", "verify", "--root", tmp_path).stdout.startswith(f"{tmp_path}: 1 ok")
    path.write_bytes(b"tampered")
    verdict = r8("cache", "verify", "--root", tmp_path, "--json", check=False)
    assert verdict.returncode == 1
    assert json.loads(verdict.stdout)["artifacts"] == [{"path": str(path), "status": "damaged"}]
    (tmp_path / "mine.txt").write_text("not r8's")
    assert "removed 1 artifacts" in r8("cache", "clean", "--root", tmp_path).stdout
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine.txt"]  # what r8 did not build stays
