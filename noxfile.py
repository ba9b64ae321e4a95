"""Sessions that create their own environment: `nox -s quantize` (main job), `nox -s tests`,
`nox -s nightly` (checks a cheaper gate check covers), `nox -s slow` (full matrices), `nox -s study` (calibration size x seed
study), `nox -s search` (fewest float layers), `nox -s benchmark`. Arguments after `--` go to the command: `nox -s quantize -- --model my.h5
--data my.npz`, `nox -s tests -- --r8-model my.h5`."""

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

# One worker per core; the tests that share a per-run memo (r8.pytest_plugin.MEASURED_ONCE) share a
# worker, and the cache's file locks make the workers wait for, not repeat, each other's builds.
# pytest-benchmark turns itself off under xdist and warns when it sees a benchmark test, even a
# deselected one: these runs time nothing, so it is off from the start.
WORKERS = ("-n", "auto", "--dist", "loadgroup", "--benchmark-disable")


@nox.session
def tests(session):
    """The CI gate: every test except benchmarks, the slow full matrices and the nightly checks; the
    ``quiet`` timing tests run last, alone.
    Sharded over N runners: `nox -s tests -- --splits N --group k` (durations in .test_durations)."""
    session.install("-e", ".[test]")
    session.run("ruff", "check", "r8", "suite", "conftest.py", "noxfile.py")
    session.run("python", "-m", "r8", "download")  # a no-op where R8_DATA_DIR is already verified
    session.run("pytest", "--r8-tier", "gate", "-m", "not quiet", *WORKERS, "--durations=15",
                "--junitxml=reports/junit/gate.xml", *session.posargs)
    # Then the timings of real runtimes, with no other test beside them: next to another worker, two
    # sessions of one ONNX file came out "slower" twice running. Exit 5: a shard holds none of them.
    session.run("pytest", "--r8-tier", "gate", "-m", "quiet", "--junitxml=reports/junit/gate-quiet.xml", *session.posargs,
                success_codes=[0, 5])


@nox.session
def nightly(session):
    """Checks moved out of the gate because a cheaper gate check covers the same code path (a
    nightly parameter of a `slow` test, such as the CIFAR CNN's twin builds, stays under `slow`)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")
    session.run("pytest", "--r8-tier", "nightly", *WORKERS, "--durations=15", *session.posargs)


@nox.session
def slow(session):
    """The long runs beyond the gate: every backend's full quantization matrix, the studies' tests."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")
    session.run("pytest", "-m", "slow", *WORKERS, "--durations=15", *session.posargs)


@nox.session
def quantize(session):
    """Main job: convert, export, calibrate, quantize every default config, evaluate, run each
    backend's best int8 .tflite and the published one on TFLite Micro, report."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")  # a no-op where R8_DATA_DIR is already verified
    model = session.posargs[session.posargs.index("--model") + 1] if "--model" in session.posargs else None
    session.run("python", "-m", "r8", "convert", *(("--model", model) if model else ()), "-o",
                f"reports/{model.rsplit('/', 1)[-1].rsplit('.', 1)[0] if model else 'pretrainedResnet'}.pt")
    session.run("python", "-m", "r8", "quantize", "--mcu", "--out", "reports", *session.posargs)


@nox.session
def study(session):
    """Each backend's two best int8 configs over calibration sizes 100..2000 x seeds 0-4 -> reports/study.*"""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")
    session.run("python", "-m", "r8", "study", "--out", "reports", *session.posargs)


@nox.session
def search(session):
    """When int8 hurts: per backend, the fewest float layers that meet a drop budget -> reports/<model>/search.*
    (`nox -s search -- --model M --max-drop-pp 0.3`)"""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")
    session.run("python", "-m", "r8", "search", "--out", "reports", *session.posargs)


@nox.session
def benchmark(session):
    """CPU inference benchmarks of every runtime -> reports/benchmark.{md,json} + plots."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "benchmark", "--out", "reports", *session.posargs)
