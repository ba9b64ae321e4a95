"""The wheel holds every subpackage and works from outside any checkout: built from a copy of
the project's files, installed into a folder of its own, imported from a folder that is not the
repository (so nothing resolves to the source tree)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "r8", src / "r8", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("r8-*.whl"))
    modules = sorted(f.relative_to(ROOT).as_posix() for f in (ROOT / "r8").rglob("*.py"))
    assert not set(modules) - set(zipfile.ZipFile(wheel).namelist()), "modules missing from the wheel"
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    dotted = [m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in modules if not m.endswith("__main__.py")]
    code = f"import importlib, r8\nfor m in {dotted!r}: importlib.import_module(m)\nprint(r8.__file__)"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], cwd=outside, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip()).is_relative_to(site), f"r8 came from {done.stdout.strip()}, not the wheel"
    cli = subprocess.run([sys.executable, "-m", "r8", "--help"], cwd=outside, env=env, capture_output=True, text=True)
    assert cli.returncode == 0 and "quantize" in cli.stdout, cli.stderr[-2000:]
    for module, test in (("r8.gates", "test_fp32_top1["), ("r8.jobs.benchmark_suite", "test_inference[")):  # pytest --pyargs
        found = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", module, "--collect-only", "-q", "-m", "accuracy or benchmark",
                                "-p", "no:cacheprovider"], cwd=outside, env=env, capture_output=True, text=True)
        assert found.returncode == 0 and test in found.stdout, found.stdout[-2000:]
