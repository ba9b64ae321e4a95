"""A model zoo as one gate, timed: IC01, IC02 and the suite's CIFAR-10 models, gated by r8's plugin
once by one runner and once as three ``--r8-shard`` shards (here one after another, each with an
empty cache, as three runners would start), then each run's reports merged. Writes
docs/measured/zoo.md and leaves the merged reports under OUT.

    R8_DATA_DIR=../shared/data python .ci/zoo.py --out /tmp/zoo
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from durations import cpu

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 3
# The plugin's gates on each model: parity, fp32 top-1, and one ORT and one LiteRT int8 config.
SELECTION = ["-m", "accuracy", "-k", "parity or fp32_top1 or qdq-u8s8-perchannel-minmax or a8w8-perchannel-minmax",
             "--r8-min-top1", "0.6", "-n", "auto", "--dist", "loadgroup", "--benchmark-disable", "-p", "no:cacheprovider"]


def zoo() -> list[Path]:
    """The zoo's model files: the MLCommons ones under R8_DATA_DIR and the suite's trained CIFAR-10 models."""
    trained = subprocess.run([sys.executable, "-c", "import trained_models; print(trained_models.cached('cifar_cnn')[0])"],
                             cwd=ROOT / "suite", capture_output=True, text=True, check=True).stdout.split()[-1]
    mlcommons = Path(os.environ["R8_DATA_DIR"]) / "mlcommons"
    return [mlcommons / "pretrainedResnet.h5", mlcommons / "pretrainedResnet_large_float.tflite",
            ROOT / "suite" / "models" / "mnv2_cifar.h5", Path(trained)]


def gate(models: list[Path], cache: Path, *args: str) -> tuple[float, str]:
    """One runner's pytest command on an empty cache: (wall seconds, pytest's last line)."""
    cache.mkdir(parents=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "r8.gates", *SELECTION,
                           *[a for m in models for a in ("--r8-model", str(m))], *args],
                          cwd=cache.parent, capture_output=True, text=True, env={**os.environ, "R8_CACHE_DIR": str(cache)})
    return time.perf_counter() - start, done.stdout.strip().splitlines()[-1].strip("= ")


def rows(merged: Path) -> dict:
    return {q.parent.name: sorted((r["backend"], r["config"], r["top1"]) for r in json.loads(q.read_text())["rows"])
            for q in merged.glob("*/quantization.json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    models = zoo()
    durations = out / ".r8-durations.json"
    one_s, one_line = gate(models, out / "one" / "cache", "--r8-store-durations", "--r8-durations", str(durations))
    shards = [gate(models, out / f"shard-{k}" / "cache", "--r8-shard", f"{k}/{SHARDS}", "--r8-durations", str(durations))
              for k in range(1, SHARDS + 1)]
    for name, roots in (("one", [out / "one"]), ("three", [out / f"shard-{k}" for k in range(1, SHARDS + 1)])):
        subprocess.run([sys.executable, "-m", "r8", "report", "merge", *[str(r / "cache" / "reports") for r in roots],
                        "--out", str(out / f"merged-{name}")], check=True, capture_output=True)
    same = rows(out / "merged-one") == rows(out / "merged-three")
    seconds = json.loads(durations.read_text())
    lines = ["| run | wall time | models | pytest |", "|---|---|---|---|",
             f"| one runner | {one_s / 60:.1f} min | {', '.join(m.stem for m in models)} | {one_line} |"]
    for k, (s, line) in enumerate(shards, 1):
        mine = [m.stem for m in models if (out / f"shard-{k}" / "cache" / "reports" / m.stem).is_dir()]
        lines.append(f"| shard {k} of {SHARDS} | {s / 60:.1f} min | {', '.join(mine)} | {line} |")
    lines += ["", f"Three runners finish in {max(s for s, _ in shards) / 60:.1f} min (the slowest shard), one in "
              f"{one_s / 60:.1f} min. The merged indexes list the same rows: {'yes' if same else 'NO'}. Each model's "
              f"seconds in the one-runner run: {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}.", "",
              f"Measured on {datetime.date.today()}, {cpu()}, {os.cpu_count()} cores, "
              f"each run on an empty cache, the shards one after another; gates: `{' '.join(SELECTION[:4])}`."]
    (ROOT / "docs" / "measured" / "zoo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
