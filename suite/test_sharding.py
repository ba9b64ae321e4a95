"""Many runners: ``nox -s tests -- --splits N --group k`` (pytest-split, by the durations committed
in ``.test_durations``) gives N shards that together are exactly the CI gate; ``--r8-shard K/N``
gives a model zoo's shards whole models, balanced by each model's time (``--r8-durations``)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trained_models

from r8.pytest_plugin import shard_models

ROOT = Path(__file__).resolve().parent.parent
SPLITS = 3


@pytest.fixture(scope="module")
def collected() -> list[tuple[list[str], str]]:
    """(test ids, the rest of the output) of the whole gate, then of each of its shards, collected at once."""
    args = [[]] + [["--splits", str(SPLITS), "--group", str(k)] for k in range(1, SPLITS + 1)]
    runs = [subprocess.Popen([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                              "--r8-tier", "gate", *a], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for a in args]
    done = []
    for run in runs:
        out, err = run.communicate()
        assert run.returncode == 0, out[-2000:] + err[-2000:]
        lines = out.splitlines()
        done.append(([t for t in lines if "::" in t], "\n".join(t for t in lines if "::" not in t)))
    return done


def test_the_shards_together_select_exactly_the_gate(collected, report):
    (gate, _), shards = collected[0], collected[1:]
    joined = [t for ids, _ in shards for t in ids]
    assert len(joined) == len(set(joined)), "a test in two shards"
    assert set(joined) == set(gate), f"lost: {sorted(set(gate) - set(joined))[:5]}"
    assert all(ids for ids, _ in shards) and len(gate) > 100
    estimates = [float(re.search(r"estimated duration: ([\d.]+)s", out)[1]) for _, out in shards]
    report(f"gate in {SPLITS} shards: tests, pytest-split's estimate (min)",
           ", ".join(f"{len(ids)} / {s / 60:.1f}" for (ids, _), s in zip(shards, estimates)))


def test_the_durations_file_covers_the_gate(collected):
    """Kept current (``.ci/durations.py``): a test missing from it is estimated at the mean, so
    shards drift out of balance as tests are added."""
    durations = json.loads((ROOT / ".test_durations").read_text())
    gate = collected[0][0]
    missing = [t for t in gate if t not in durations]
    assert len(missing) <= 0.1 * len(gate), f"{len(missing)} of {len(gate)} gate tests lack a duration: {missing[:5]}"


# A two-worker run of a small suite (pytest-xdist), in a subprocess: its conftest records, in each
# worker, the threads r8's plugin gave it (R8_THREADS), torch's, ONNX Runtime's for r8's sessions, and a
# process the worker starts.
WORKER_CONFTEST = """
import json, os, subprocess, sys

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from r8.runtimes.runners import OnnxRunner


@pytest.fixture(scope='session')
def r8_torch_probs():
    return 'measured once'


@pytest.fixture(scope='session', autouse=True)
def threads_seen(tmp_path_factory):
    path = tmp_path_factory.mktemp('onnx') / 'm.onnx'
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [x],
              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 3])])), path)
    child = subprocess.run([sys.executable, '-c', 'import torch; print(torch.get_num_threads())'],
                           capture_output=True, text=True, check=True)
    seen = {'r8': os.environ['R8_THREADS'], 'torch': torch.get_num_threads(), 'child_torch': int(child.stdout),
            'onnxruntime': OnnxRunner(path).session.get_session_options().intra_op_num_threads}
    with open(os.environ['PYTEST_XDIST_WORKER'] + '.json', 'w') as f:
        json.dump(seen, f)
"""


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """(the run's stdout, the threads seen by each worker) of ``-n 2 --dist loadgroup`` on 8 tests that
    share a measured-once fixture and 8 that do not, started without R8_THREADS."""
    folder = tmp_path_factory.mktemp("two_workers")
    (folder / "conftest.py").write_text(WORKER_CONFTEST)
    (folder / "test_grouped.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('i', range(8))\ndef test_shares(r8_torch_probs, i):\n    pass\n\n\n"
        "@pytest.mark.parametrize('i', range(8))\ndef test_alone(i):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k not in ("R8_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider",
                           "-p", "no:randomly", str(folder)], cwd=folder, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-2000:]
    return done.stdout, [json.loads(f.read_text()) for f in sorted(folder.glob("gw*.json"))]


def test_tests_that_share_a_measurement_share_a_worker(two_workers):
    """Under ``-n 2 --dist loadgroup`` every test using one of r8's measured-once fixtures runs on one
    worker (the premise of the gate's time: otherwise each worker measures the same rows again).
    pytest 9.2 keeps node ids where pytest-xdist 3.8 cannot add its group, and a group mark added
    after xdist's own hook is never read: either way the grouped tests spread over both workers."""
    stdout, _ = two_workers
    ran = re.findall(r"\[(gw\d)\] .*PASSED .*::(test_\w+)\[", stdout)
    assert len(ran) == 16 and {w for w, _ in ran} == {"gw0", "gw1"}, stdout[-2000:]
    assert len({w for w, test in ran if test == "test_shares"}) == 1, "the grouped tests ran on both workers"


def test_each_worker_takes_its_share_of_the_cores(two_workers):
    """Under ``-n 2`` r8's plugin gives each worker cores // 2 threads (at least 1), and so torch, r8's
    ONNX Runtime sessions and the processes a worker starts: two workers whose thread pools each take
    every core wait on each other (IC01's torch configs in two processes at once on 2 cores took 122 s
    at 2 threads each, 59 s at 1)."""
    share = max(1, (os.cpu_count() or 1) // 2)
    _, seen = two_workers
    assert len(seen) == 2 and all(s == {"r8": str(share), "torch": share, "child_torch": share, "onnxruntime": share}
                                  for s in seen), seen


# ---- a model zoo over runners: --r8-shard gives each shard whole models, balanced by each model's time
def test_shards_take_whole_models_balanced_by_their_times():
    models = [Path(f"/m/{stem}.h5") for stem in ("a", "b", "c", "d", "e")]
    seconds = {"a": 100.0, "b": 60.0, "c": 50.0, "d": 40.0}  # e unmeasured: the mean, 62.5
    shards = [shard_models(models, f"{k}/3", seconds) for k in (1, 2, 3)]
    assert sorted(m for s in shards for m in s) == sorted(models)  # each model in exactly one shard
    assert [[m.stem for m in s] for s in shards] == [["a"], ["d", "e"], ["b", "c"]]
    assert shard_models(models, "1/1", {}) == models
    for bad in ("0/3", "4/3", "1/6", "one"):
        with pytest.raises(pytest.UsageError, match=f"--r8-shard {bad}"):
            shard_models(models, bad, seconds)


ZOO_TEST = """
import time

def test_takes_its_models_time(r8_model):
    time.sleep(0.6 if r8_model.stem == "slow" else 0.05)
"""


def test_the_durations_file_learns_each_model_and_the_shards_split_by_it(tmp_path):
    """One run stores each model's seconds; then each of two shards collects one whole model."""
    digits, _ = trained_models.cached("digits")
    models = []
    for stem in ("slow", "quick"):
        models += ["--r8-model", str(tmp_path / f"{stem}.h5")]
        (tmp_path / f"{stem}.h5").write_bytes(digits.read_bytes())
    (tmp_path / "test_zoo.py").write_text(ZOO_TEST)
    durations = tmp_path / "models.json"

    def pytest_run(*args):
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_zoo.py", *models,
                               "--r8-durations", str(durations), *args], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return [line for line in done.stdout.splitlines() if "::" in line]

    pytest_run("--r8-store-durations")
    seconds = json.loads(durations.read_text())
    assert set(seconds) == {"slow", "quick"} and seconds["slow"] > seconds["quick"], seconds
    shards = [pytest_run("--collect-only", "--r8-shard", f"{k}/2") for k in (1, 2)]
    assert shards == [["test_zoo.py::test_takes_its_models_time[slow]"], ["test_zoo.py::test_takes_its_models_time[quick]"]]
