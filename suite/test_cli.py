"""The command-line contract (`python -m r8 ...`) that outside checks rely on."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import r8, r8_here

from r8.calibration import calibration_set
from r8.core.errors import R8Error
from r8.metrics import per_class, predict, top1
from r8.runtimes.runners import TorchRunner


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_evaluate_json(backend, torch_model, perf200):
    result = json.loads(r8("evaluate", "--backend", backend, "--subset", "perf200", "--json").stdout)
    assert set(result) == {"backend", "subset", "n", "top1", "per_class"}
    assert (result["backend"], result["subset"], result["n"]) == (backend, "perf200", 200)
    probs = predict(TorchRunner(torch_model), perf200.images, progress=False)
    assert result["top1"] == pytest.approx(top1(probs, perf200.labels))
    assert result["per_class"] == pytest.approx(per_class(probs, perf200.labels))


def test_evaluate_human_output():
    out = r8("evaluate", "--backend", "torch", "--subset", "perf200").stdout
    assert "top-1" in out and "airplane" in out and "truck" in out


def test_convert_writes_loadable_program(tmp_path, torch_model, rng):
    import torch

    out = tmp_path / "resnet8.pt"
    r8("convert", "-o", str(out))
    assert (tmp_path / "resnet8.state_dict.pt").is_file()
    # load and run in a process where r8 cannot be imported: the file stands on its own
    code = ("import sys, torch; sys.modules['r8'] = None\n"
            f"m = torch.export.load(open({str(out)!r}, 'rb')).module()\n"
            "x = torch.arange(2*3*32*32, dtype=torch.float32).reshape(2, 3, 32, 32) % 256\n"
            f"torch.save(m(x), {str(tmp_path / 'y.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True)
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) % 256
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), torch_model(x), atol=1e-6)
    state = torch.load(tmp_path / "resnet8.state_dict.pt")
    assert all(torch.equal(state[k], v) for k, v in torch_model.state_dict().items())


def test_missing_model_exits_with_message(tmp_path):
    missing = tmp_path / "missing.h5"
    done = r8_here("evaluate", "--backend", "torch", "--model", str(missing), check=False)
    assert done.returncode == 2
    assert f"{missing}: file not found" in done.stderr and "Traceback" not in done.stderr


def test_r8_threads_that_is_not_a_positive_number_is_refused(monkeypatch):
    monkeypatch.setenv("R8_THREADS", "two")
    done = r8_here("evaluate", "--backend", "torch", "--subset", "perf200", check=False)
    assert done.returncode == 2 and "R8_THREADS='two': a positive number of threads" in done.stderr


def test_converter_imports_without_tensorflow(h5_path, tmp_path):
    """The core converter needs only torch, h5py and numpy: block the rest and convert."""
    code = ("import sys\n"
            "for m in ('tensorflow', 'keras', 'tf_keras', 'tf2onnx', 'torchvision', 'tqdm', 'onnx'):\n"
            "    sys.modules[m] = None\n"
            "from r8.frontends.convert import convert, save\n"
            f"save(convert({str(h5_path)!r}), {str(tmp_path / 'm.pt')!r})\n"
            "assert not any(k.startswith(('tensorflow', 'keras')) for k in sys.modules if sys.modules[k])\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    import torch

    from r8.frontends.convert import convert, load_program

    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():  # the program saved is the model converted
        torch.testing.assert_close(load_program(tmp_path / "m.pt")(x), convert(h5_path)(x), rtol=0, atol=1e-6)


# The job's report contract on two ORT configs, one per format; the job on ORT's every default config
# runs nightly (in the gate, test_gates.py builds and gates each of them on IC01 through the same
# r8.jobs.quantize.evaluate_config that the job calls per config).
TWO_ORT_CONFIGS = ["ort/qdq-u8s8-perchannel-minmax", "ort/qop-u8s8-perchannel-minmax"]


@pytest.mark.accuracy
@pytest.mark.parametrize("configs", [pytest.param(TWO_ORT_CONFIGS, id="two-configs"),
                                     pytest.param(None, id="every-default", marks=pytest.mark.nightly)])
def test_quantize_job_writes_report_contract(configs, tmp_path, fp32_top1):
    import os

    from r8.backends import registry

    summary = tmp_path / "step-summary.md"
    done = r8("quantize", *(("--configs", *configs) if configs else ("--backend", "ort")), "--out", str(tmp_path),
              env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    # the console: stdout holds r8's own lines only; stderr, not a terminal here, one line per step (no bars)
    assert done.stdout.splitlines()[0].startswith("pretrainedResnet: fp32 top-1") and "index.html" in done.stdout
    steps = len(configs or registry()["ort"].configs(available=True))
    assert f"ort int8 configs: {steps}/{steps} done" in done.stderr and "\r" not in done.stderr and "\x1b[" not in done.stderr
    assert not any(w in done.stderr for w in ("oneDNN", "absl", "cuda", "Warning", "WARNING"))
    assert "| backend | config |" in summary.read_text()  # the int8 table on the CI run's page
    reports, tmp_path = tmp_path, tmp_path / "pretrainedResnet"  # OUT/<model stem>/
    assert (reports / "index.html").is_file() and (tmp_path / "conversion.json").is_file()
    report = json.loads((tmp_path / "quantization.json").read_text())
    assert report["model"]["stem"] == "pretrainedResnet" and report["data"]["name"] == "cifar10"
    assert report["thresholds"] == {"min_top1": 0.85, "max_drop_pp": 5.0, "best_drop_pp": 0.2, "prob_atol": 1e-5}
    assert {g["name"] for g in report["gates"]} >= {"fp32 top-1", "best int8 drop pp ort"}
    assert report["fp32_top1"] == pytest.approx(fp32_top1)
    backends = [row["backend"] for row in report["rows"]]
    assert backends.count("tflite-reference") == 1 and backends.count("ort") == len(configs or registry()["ort"].configs(available=True))
    for row in report["rows"]:
        assert {"backend", "config", "top1", "top1_perf200", "drop_pp", "size_bytes", "per_class", "artifact",
                "discordant", "mcnemar_p", "drop_ci95_pp"} <= set(row)
        assert row["drop_pp"] == pytest.approx((fp32_top1 - row["top1"]) * 100, abs=1e-3)
        assert len(row["per_class"]) == 10 and row["size_bytes"] == Path(row["artifact"]).stat().st_size
        if row["backend"] == "ort":
            assert row["calibration_s"] > 0 and row["quantize_s"] > 0
    assert [s["which"] for s in report["sqnr"]] == ["best", "worst"]
    md = (tmp_path / "quantization.md").read_text()
    assert "tflite-reference" in md and "SQNR" in md and "95 % CI" in md
    import matplotlib.image

    assert set(report["figures"].values()) == {"samples_best_int8.png", "sqnr_layers.png"}
    for name, (min_w, min_h) in {"samples_best_int8.png": (1200, 400), "sqnr_layers.png": (800, 500)}.items():
        assert f"]({name})" in md
        height, width = matplotlib.image.imread(tmp_path / name).shape[:2]
        assert width >= min_w and height >= min_h and (tmp_path / name).stat().st_size > 20_000


def test_calibrate_writes_the_set(tmp_path):
    out = tmp_path / "cal.npz"
    r8("calibrate", "--n", "250", "--seed", "3", "-o", str(out))
    saved = np.load(out)
    assert len(saved["indices"]) == 250 and int(saved["seed"]) == 3 and str(saved["split"]) == "train"
    from r8.data import load_dataset

    assert np.array_equal(saved["indices"], calibration_set(load_dataset("cifar10"), 250, 3).indices)
    done = r8_here("calibrate", "--n", "255", "-o", str(tmp_path / "bad.npz"), check=False)
    assert done.returncode == 2 and "multiple of 10" in done.stderr and not (tmp_path / "bad.npz").exists()


@pytest.mark.accuracy
@pytest.mark.parametrize("model", ["digits", pytest.param("pretrainedResnet", marks=pytest.mark.nightly)])
def test_study_writes_report_contract(model, tmp_path):
    """The study's report on the digits model in the gate (its 360 test images), on IC01 nightly:
    the job is the same code for any model, and IC01's configs are gated in test_gates.py."""
    import trained_models

    configs = ["ort/qop-u8s8-perchannel-minmax", "torch/fx-fbgemm-perchannel-minmax"]
    path, data = trained_models.cached("digits") if model == "digits" else (None, None)
    r8("study", *(("--model", path, "--data", data) if path else ()), "--out", str(tmp_path), "--sizes", "100", "200",
       "--seeds", "0", "1", "--configs", *configs)
    tmp_path = tmp_path / model
    report = json.loads((tmp_path / "study.json").read_text())
    assert {"fp32_top1", "runs", "summary"} <= set(report) and report["model"]["stem"] == model
    assert len(report["runs"]) == 2 * 2 * 2 and len(report["summary"]) == 2 * 2  # configs x sizes (x seeds)
    for run in report["runs"]:
        assert {"backend", "config", "n", "seed", "top1", "drop_pp", "calibration_s", "quantize_s"} <= set(run)
        assert run["drop_pp"] == pytest.approx((report["fp32_top1"] - run["top1"]) * 100, abs=1e-3)
    for s in report["summary"]:
        assert {"backend", "config", "n", "mean_drop_pp", "std_drop_pp", "min_drop_pp", "max_drop_pp"} <= set(s)
        assert s["min_drop_pp"] <= s["mean_drop_pp"] <= s["max_drop_pp"]
    assert "![drop vs calibration size](study.png)" in (tmp_path / "study.md").read_text()
    done = r8_here("study", "--out", str(tmp_path.parent), "--configs", "ort/no-such-config", check=False)
    assert done.returncode == 2 and "unknown ort config 'no-such-config'" in done.stderr
    assert (tmp_path / "study.png").stat().st_size > 10_000


def test_tensorflow_imported_first_does_not_crash(exported_path):
    """A notebook that imports tensorflow, then r8, then loads a saved program (which loads
    triton): without r8's guard the process dies with SIGSEGV (see r8.frontends.keras.reference)."""
    code = ("import tensorflow, torch, r8, warnings\n"
            "from r8.frontends.convert import load_program\n"
            f"m = load_program({str(exported_path)!r})\n"
            "print(m(torch.zeros(2, 3, 32, 32)).shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    assert "torch.Size([2, 10])" in done.stdout and "r8 disabled triton" in done.stderr


def test_evaluate_refuses_cuda_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: see test_cuda_parity_and_top1")
    done = r8_here("evaluate", "--backend", "torch", "--device", "cuda", "--subset", "perf200", check=False)
    assert done.returncode == 2 and "no CUDA device here" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.accuracy
def test_cuda_parity_and_top1(keras_probs, torch_model, test_split, report):
    import torch

    from r8.metrics import agreement

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    import copy

    probs = predict(TorchRunner(copy.deepcopy(torch_model), device="cuda"), test_split.images, progress=False)
    diff = float(np.abs(probs - keras_probs).max())
    report("parity keras-vs-torch-cuda max|dp|, argmax agreement (10k)", f"{diff:.2e}, {agreement(probs, keras_probs):.4%}")
    assert diff <= 1e-5 and agreement(probs, keras_probs) == 1.0 and top1(probs, test_split.labels) >= 0.85


def test_a_crash_exits_3_and_says_it_is_a_bug(monkeypatch, capsys):
    """Any exception that is not R8Error: one line saying it is a bug in r8, naming the command and
    the file, exit 3 (never 1 with a traceback, which reads like a verdict on the model)."""
    import r8.cli

    def crash(args):
        raise KeyError("a key r8 forgot to check")

    monkeypatch.setattr(r8.cli, "cmd_inspect", crash)
    assert r8.cli.main(["inspect", "--model", "some.h5"]) == 3
    err = capsys.readouterr().err
    assert "internal error (a bug in r8" in err and "`inspect` with --model some.h5" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _rows():
    """One row of each kind: an ORT and a torch config, the published reference and a TFLM row,
    the last two with the smallest drops."""
    from r8.rows import MCU_BACKEND, REFERENCE_BACKEND, Int8Row, McuRow, ReferenceRow

    def shared(drop, artifact):
        return {"top1": 0.9, "drop_pp": drop, "drop_ci95_pp": (drop - 0.1, drop + 0.1), "mcnemar_p": 0.5,
                "discordant": (3, 2), "per_class": (0.8, 1.0), "subsets": {"perf200": 0.91}, "size_bytes": 10,
                "artifact": artifact, "env": {"cpu": "x"}}
    measured = {"tflm_s": 1.0, "bitexact_ref_kernels": True, "differs_ref_kernels": 0, "ref_kernels_first_differ_at": {},
                "differs_xnnpack": 0, "differs_xnnpack_top1": 0, "arena": {"needed": 100}, "flash": {"total": 200},
                "ops": ["CONV_2D"]}
    return [Int8Row("ort", **shared(0.5, "a.onnx"), config_id="a", calibration="train", artifact_digest="d1",
                    calibration_s=1.0, quantize_s=2.0),
            Int8Row("torch", **shared(0.3, "b.pt"), config_id="b", calibration="train", artifact_digest="d2"),
            ReferenceRow(REFERENCE_BACKEND, **shared(-1.0, "/x/model_int8.tflite")),
            McuRow(MCU_BACKEND, **shared(-2.0, "b.tflite"), source_backend="tflite", source_config="b-train",
                   litert_top1=0.9, vs_litert_ci95_pp=(-0.1, 0.1), measured=measured)]


def test_best_is_chosen_among_r8s_own_rows():
    """quantize prints r8's best: a published reference or TFLite Micro row with a smaller drop is
    never it; one backend's best is that backend's."""
    from r8.rows import best_row

    rows = _rows()
    assert (best_row(rows).backend, best_row(rows).config) == ("torch", "b-train")
    assert best_row(rows, "ort").config == "a-train"
    assert best_row(rows[2:]) is None


def test_rows_keep_their_identity_through_json():
    """A row read back from its JSON form is the row written, kind and fields; its label is made
    from its fields (never parsed back); a row without a kind (an older file) is refused by name."""
    from r8.rows import row_from_json

    for row in _rows():
        js = json.loads(json.dumps(row.to_json()))
        assert row_from_json(js) == row and js["kind"] == row.kind and js["config"] == row.config
        assert js["top1_perf200"] == 0.91 and "subsets" not in js
    assert [r.config for r in _rows()] == ["a-train", "b-train", "model_int8.tflite (published int8)", "b-train"]
    assert _rows()[3].to_json()["arena_bytes"] == 100 and "measured" not in _rows()[3].to_json()
    with pytest.raises(R8Error, match="kind None .*older r8"):
        row_from_json({"backend": "ort", "config": "a", "drop_pp": 0.1})
    with pytest.raises(R8Error, match="lacks config_id"):
        row_from_json({k: v for k, v in _rows()[0].to_json().items() if k != "config_id"})


def test_the_console_state_ends_with_the_run(monkeypatch):
    """A quiet run hides warnings and log lines while it runs and leaves the process as it found it
    (the CLI called twice in one process starts from the same state)."""
    import logging
    import os
    import warnings

    from r8.core import console

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    before = (list(warnings.filters), {n: logging.getLogger(n).level for n in console.LOGGERS})
    with console.run(verbose=False):
        assert console.MODE.get() == "quiet" and logging.getLogger("torch").level == logging.ERROR
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and warnings.filters[0][0] == "ignore"
    assert (list(warnings.filters), {n: logging.getLogger(n).level for n in console.LOGGERS}) == before
    assert console.MODE.get() is None and "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_the_benchmark_run_is_not_disabled_by_an_xdist_parent(monkeypatch):
    """``python -m r8 benchmark`` started from a pytest-xdist worker (the README test under -n)
    inherits PYTEST_XDIST_WORKER, with which pytest-benchmark disables itself and writes no JSON;
    the benchmark's pytest gets the environment without those variables."""
    from pytest_benchmark.session import BenchmarkSession

    from r8.jobs.benchmark import benchmark_env

    assert "PYTEST_XDIST_WORKER" in BenchmarkSession.__init__.__code__.co_consts  # the premise: it reads that variable
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("R8_CACHE_DIR", "/somewhere")
    env = benchmark_env()
    assert not [k for k in env if k.startswith("PYTEST_XDIST_")] and env["R8_CACHE_DIR"] == "/somewhere"


def test_tflite_converter_keeps_quiet_in_a_quiet_run(tmp_path, capfd):
    """TF's Keras-to-.tflite converter prints the SavedModel it exports on the way (its endpoints
    and captures, a line per variable) to stdout, where a command's own lines belong: in a quiet
    run (the CLI's default) nothing of it shows; with ``-v`` it does (the premise: it is printed)."""
    import trained_models

    from r8.backends.tflite import MATRIX, quantize
    from r8.core import console
    from r8.data import load_dataset

    path, npz = trained_models.cached("digits")
    cal = calibration_set(load_dataset(npz), n=100)
    for verbose in (False, True):
        with console.run(verbose):
            quantize(path, tmp_path / f"verbose-{verbose}.tflite", MATRIX[0], cal)
        out = capfd.readouterr().out
        assert ("TensorSpec" in out) == verbose, out[:300]


def test_progress_is_a_bar_on_a_terminal_and_a_line_per_step_in_a_log(monkeypatch, capsys):
    from r8.core import console

    monkeypatch.setattr(console, "on_terminal", lambda: False)
    assert list(console.progress(range(3), "configs")) == [0, 1, 2]
    assert list(console.progress(range(3), "batches", step=False)) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["configs: 1/3 done", "configs: 2/3 done", "configs: 3/3 done"]
    monkeypatch.setattr(console, "on_terminal", lambda: True)
    assert type(console.progress(range(3), "configs")).__name__ == "tqdm"
    assert console.progress(range(3), "configs", enabled=False) == range(3)
