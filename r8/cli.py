"""``python -m r8 {convert,evaluate,download}``: the command-line contract."""

import argparse
import json
import sys
from pathlib import Path

from r8 import paths
from r8.errors import R8Error


def make_runner(backend: str, h5: Path):
    if backend == "keras":
        from r8.runners import KerasRunner

        return KerasRunner(h5)
    from r8.convert import convert
    from r8.runners import TorchRunner

    return TorchRunner(convert(h5)[0])


def cmd_convert(args) -> None:
    from r8.convert import convert, save

    out, state = save(convert(args.model)[0], args.out)
    print(f"wrote {out} and {state}")


def cmd_evaluate(args) -> None:
    from r8.data import CLASSES, load_split
    from r8.metrics import evaluate

    result = evaluate(make_runner(args.backend, args.model), load_split(args.subset), progress=not args.json)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['backend']} on {result['subset']} (n={result['n']}): top-1 {result['top1']:.2%}")
    for name, acc in zip(CLASSES, result["per_class"]):
        print(f"  {name:<11} {acc:.2%}")


def cmd_quantize(args) -> None:
    from r8.jobs import quantize_job

    report = quantize_job(args.backend, args.out, args.calibration)
    best = min(report["rows"], key=lambda r: r["drop_pp"])
    print(f"fp32 top-1 {report['fp32_top1']:.2%}; {len(report['rows'])} rows; best {best['backend']} "
          f"{best['config']}: {best['top1']:.2%} ({best['drop_pp']:+.2f} pp)")
    print(f"wrote {args.out / 'quantization.md'} and {args.out / 'quantization.json'}")


def cmd_benchmark(args) -> None:
    """Runs the suite's benchmark tests (pytest-benchmark), then writes the report from them."""
    import subprocess

    from r8 import artifacts
    from r8.bench import BEST_DROP_PP, THREADS, macs_per_image
    from r8.report import write_benchmark_report

    root = Path(__file__).resolve().parent.parent
    if not (root / "suite" / "test_benchmark.py").is_file():
        raise R8Error(f"{root / 'suite'}: the benchmark suite is not there; run from a source checkout")
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "pytest-benchmark.json"
    subprocess.run([sys.executable, "-m", "pytest", "suite/test_benchmark.py", "-m", "benchmark",
                    f"--benchmark-json={raw.resolve()}", "-p", "no:cacheprovider", *args.pytest_args],
                   cwd=root, check=True)
    results = json.loads(raw.read_text())
    fp32_top1 = next(b["extra_info"]["top1"] for b in results["benchmarks"] if b["extra_info"]["runtime"] == "torch")
    write_benchmark_report(results, THREADS, macs_per_image(artifacts.torch_fp32()), fp32_top1,
                           BEST_DROP_PP, args.out)
    print(f"wrote {args.out / 'benchmark.md'} and {args.out / 'benchmark.json'}")


def cmd_download(args) -> None:
    from r8.data import download_cifar10, download_mlcommons

    print(f"CIFAR-10 verified in {download_cifar10(args.root)}")
    print(f"MLCommons model files verified in {download_mlcommons(Path(args.root) / 'mlcommons')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r8", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert the Keras .h5 to a torch.export .pt (+ state_dict)")
    p.add_argument("--model", type=Path, default=paths.keras_model_path())
    p.add_argument("-o", "--out", type=Path, required=True)
    p.set_defaults(run=cmd_convert)

    from r8.data import SUBSETS

    p = sub.add_parser("evaluate", help="top-1 overall and per class")
    p.add_argument("--backend", choices=("keras", "torch"), required=True)
    p.add_argument("--model", type=Path, default=paths.keras_model_path())
    p.add_argument("--subset", choices=SUBSETS, default="test")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("quantize", help="int8 quantize every default config, evaluate, report")
    p.add_argument("--backend", choices=("ort", "torch", "all"), default="all")
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--calibration", choices=("train", "mlcommons-test-overlap"), default="train",
                   help="calibration images: 1000 stratified training images (default), or the "
                        "MLCommons list, which overlaps the test set (comparison only)")
    p.set_defaults(run=cmd_quantize)

    p = sub.add_parser("benchmark", help="CPU inference benchmarks of every runtime, report + plots")
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k onnxruntime)")
    p.set_defaults(run=cmd_benchmark)

    p = sub.add_parser("download", help="fetch and verify CIFAR-10 and the MLCommons files into a data root")
    p.add_argument("--root", type=Path, default=paths.data_dir())
    p.set_defaults(run=cmd_download)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except R8Error as e:
        print(f"r8: error: {e}", file=sys.stderr)
        return 2
    return 0
