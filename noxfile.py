"""Sessions that create their own environment: `nox -s quantize` (main job), `nox -s tests`,
`nox -s study` (calibration size x seed study), `nox -s benchmark`."""

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

CI_GATE = "not benchmark and not slow"  # fast suite + accuracy gates


@nox.session
def tests(session):
    """The CI gate: every test except benchmarks and the slow full matrices."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")  # a no-op where R8_DATA_DIR is already verified
    session.run("pytest", "-m", CI_GATE, *session.posargs)


@nox.session
def quantize(session):
    """Main job: convert, export, calibrate, quantize every default config, evaluate, report."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")  # a no-op where R8_DATA_DIR is already verified
    session.run("python", "-m", "r8", "convert", "-o", "reports/resnet8.pt")
    session.run("python", "-m", "r8", "quantize", "--backend", "all", "--out", "reports", *session.posargs)


@nox.session
def study(session):
    """Each backend's two best int8 configs over calibration sizes 100..2000 x seeds 0-4 -> reports/study.*"""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "download")
    session.run("python", "-m", "r8", "study", "--out", "reports", *session.posargs)


@nox.session
def benchmark(session):
    """CPU inference benchmarks of every runtime -> reports/benchmark.{md,json} + plots."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "r8", "benchmark", "--out", "reports", *session.posargs)
