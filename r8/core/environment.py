"""What a measured number depends on besides the model, the data and the config: the CPU (its
model and the ISA extensions int8 kernels choose their code path by), the threads, the engine and
the package versions. Every row of quantization.json records it: int8 kernels differ by CPU."""

import os
import platform
import sys
from functools import cache
from importlib import metadata

from r8.core.errors import R8Error

ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo names
PACKAGES = ("torch", "torchao", "onnxruntime", "ai-edge-litert", "tensorflow", "openvino", "tflite-micro", "numpy")


@cache
def machine() -> dict:
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the CPU's name only
        pass
    return {"cpu": cpu, "isa": [f for f in ISA_FLAGS if f in flags], "cores": os.cpu_count()}


def saturating_int8() -> bool:
    """x86 without a VNNI instruction (AVX-512 VNNI, AVX-VNNI, AMX): int8 kernels multiply u8 x s8
    with ``vpmaddubsw``, whose 16-bit sums of pairs saturate on real activations, so ONNX Runtime
    and torch's x86/fbgemm engines fall back to 7-bit values and oneDNN loses accuracy."""
    isa = set(machine()["isa"])
    return "avx2" in isa and not isa & {"avx512_vnni", "avx_vnni", "amx_int8"}


THREADS_VAR = "R8_THREADS"


def threads() -> int:
    """The threads each runtime r8 drives may use, from R8_THREADS (0 where unset: each runtime's default)."""
    value = os.environ.get(THREADS_VAR, "").strip()
    if value and not (value.isdigit() and int(value) > 0):
        raise R8Error(f"{THREADS_VAR}={value!r}: a positive number of threads, or unset")
    return int(value or 0)


def limit_threads(n: int) -> None:
    """Every runtime r8 drives, in this process and in those it starts, uses ``n`` threads: r8 reads
    R8_THREADS for ONNX Runtime and LiteRT's calibrator; torch reads OMP_NUM_THREADS when it loads
    (set here where it has loaded), TensorFlow its own two variables. r8's pytest plugin calls it in
    each pytest-xdist worker: two processes whose thread pools each take every core wait on each
    other."""
    for var in (THREADS_VAR, "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


@cache
def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def environment(runner) -> dict:
    """The environment a runner's predictions were measured in: the machine, the runner's
    threads (0: the runtime's default, where the runtime does not say it) and engine, and the
    package versions."""
    threads = getattr(runner, "threads", 0) or getattr(runner, "default_threads", lambda: 0)()
    engine = getattr(runner, "engine", None)
    return {**machine(), "threads": threads, **({"engine": engine} if engine else {}), "versions": versions()}


def summary(env: dict) -> str:
    """One line: ``AMD EPYC (avx2, avx512_vnni; 2 cores), 2 threads, engine x86``."""
    threads = (f"{env['threads']} thread{'s' * (env['threads'] > 1)}" if env.get("threads")
               else "the runtime's default threads")
    return (f"{env['cpu']} ({', '.join(env['isa']) or 'no AVX2'}; {env['cores']} cores), {threads}"
            + (f", engine {env['engine']}" if env.get("engine") else ""))
