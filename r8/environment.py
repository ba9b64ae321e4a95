"""What a measured number depends on besides the model, the data and the config: the CPU (its
model and the ISA extensions int8 kernels choose their code path by), the threads, the engine and
the package versions. Every row of quantization.json records it: int8 kernels differ by CPU."""

import os
import platform
from functools import cache
from importlib import metadata

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
