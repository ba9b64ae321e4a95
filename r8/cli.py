"""``python -m r8 {convert,inspect,evaluate,quantize,search,calibrate,study,benchmark,download,cache,mcu,report}``: the
command-line contract. The only place, with the suite's options, where a model, a data set and
thresholds are made from paths and flags; everything below takes them as values."""

import argparse
import contextlib
import json
import sys
from pathlib import Path

from r8.core import environment, paths
from r8.core.errors import R8Error
from r8.thresholds import Thresholds, add_gate_options


def model_and_data(args, several_inputs: bool = False):
    """The :class:`r8.model.Model` and :class:`r8.data.Dataset` of ``--model`` and ``--data``,
    checked against each other (a model with several inputs only where ``several_inputs``)."""
    from r8.data import load_dataset
    from r8.model import load_model

    model, data = load_model(args.model, several_inputs), load_dataset(args.data)
    data.check(model)
    return model, data


def thresholds(args) -> Thresholds:
    return Thresholds(min_top1=args.min_top1, max_drop_pp=args.max_drop_pp, best_drop_pp=args.best_drop_pp)


def make_runner(backend: str, model, device: str = "cpu"):
    from r8.artifacts import torch_fp32
    from r8.runtimes.runners import TorchRunner, reference_runner

    return reference_runner(model.path) if backend == "keras" else TorchRunner(torch_fp32(model), device=device)


def cmd_convert(args) -> None:
    from r8.frontends.convert import convert, save

    if args.route == "onnx2torch":  # the fallback: Keras -> ONNX (tf2onnx) -> PyTorch (onnx2torch)
        import tempfile

        from r8.frontends.export import keras_to_onnx
        from r8.frontends.onnx_route import onnx_to_torch, route_limit

        with tempfile.TemporaryDirectory() as tmp:
            keras_to_onnx(args.model, Path(tmp) / "model.onnx")
            model = onnx_to_torch(Path(tmp) / "model.onnx")
        with route_limit(args.model, "saved with torch.export"):
            out, state = save(model, args.out)
    else:
        out, state = save(convert(args.model), args.out)
    print(f"wrote {out} and {state}")


def cmd_inspect(args) -> None:
    from r8.frontends.convert import format_table, input_layout, inspect

    rows, problems = inspect(args.model)
    print(format_table(rows))
    layout = input_layout(args.model)
    if layout != "-":
        print(f"\ninput layout: {layout} (r8's data sets are NHWC; each model is fed in its own layout)")
    params = sum(r["params"] for r in rows)
    if problems:
        print(f"\n{len(problems)} unsupported layer(s); {args.model} cannot be converted until they are replaced:")
        for p in problems:
            print(f"  {p}")
        raise SystemExit(1)
    print(f"\n{len(rows)} layers, {params:,} parameters: every layer is supported")


def cmd_evaluate(args) -> None:
    from r8.metrics import evaluate

    model, data = model_and_data(args, several_inputs=True)
    result = evaluate(make_runner(args.backend, model, args.device), data.split(args.subset), progress=not args.json)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['backend']} on {result['subset']} (n={result['n']}): top-1 {result['top1']:.2%}")
    for name, acc in zip(data.class_names(model.num_classes), result["per_class"]):
        print(f"  {name:<11} {acc:.2%}")


def cmd_quantize(args) -> None:
    from r8.backends import backend
    from r8.calibration import calibration_set
    from r8.jobs.quantize import find_config, quantize_job
    from r8.rows import best_row

    if args.backend != "all":
        backend(args.backend)  # an unknown name is refused before any work
    for name in args.configs or ():
        find_config(name)
    model, data = model_and_data(args)
    cal = calibration_set(data, args.calibration_size, args.calibration_seed, args.calibration, model.num_classes)
    result = quantize_job(model, data, args.backend, args.out, cal, thresholds(args), configs=args.configs, mcu=args.mcu)
    best = best_row(result.rows)
    out = model.report_dir(args.out)
    print(f"{model.stem}: fp32 top-1 {result.fp32_top1:.2%}; {len(result.rows)} rows; " +
          (f"best {best.backend} {best.config}: {best.top1:.2%} (drop {best.drop_pp:.2f} pp, 95 % CI "
           f"{best.drop_ci95_pp[0]:.2f} to {best.drop_ci95_pp[1]:.2f})" if best else "no int8 config measured"))
    print(f"wrote {out / 'quantization.md'} and {out / 'quantization.json'}; open {args.out / 'index.html'}")
    for g in result.gates:
        if not g.passed:
            print(f"r8: {g.message(model.stem)}", file=sys.stderr)
    if any(g.failed for g in result.gates):
        raise SystemExit(1)


def cmd_search(args) -> None:
    from r8.backends import backend
    from r8.calibration import calibration_set
    from r8.jobs.search import START_RULES, BudgetNotMet, search_job, searched_backends

    names = [args.backend] if args.backend else None
    if args.config not in START_RULES:
        if not args.backend:
            raise R8Error(f"--config {args.config} needs --backend (a config id is a backend's; without one: "
                          f"{' or '.join(START_RULES)})")
        backend(args.backend).config(args.config)  # an unknown id is refused before any work
    searched_backends(names)  # an unknown name, or one that cannot keep layers float, is refused before any work
    model, data = model_and_data(args)
    cal = calibration_set(data, num_classes=model.num_classes)
    try:
        rows = search_job(model, data, cal, args.max_drop_pp, args.out, names, start=args.config).rows
    except BudgetNotMet as e:
        print(f"r8: budget not met: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    for r in rows:
        print(f"{r.backend} {r.config}: {'met' if r.met else 'NOT met'} with {len(r.float_layers)} float layer(s) "
              f"({r.float_mac_share:.1%} of the MACs: {', '.join(r.float_layers) or 'none'}); test drop {r.drop_pp:.2f} pp "
              f"(95 % CI {r.drop_ci95_pp[0]:.2f} to {r.drop_ci95_pp[1]:.2f}), validation {r.validation_drop_pp:.2f} pp "
              f"(upper bound {r.validation_drop_ci95_pp[1]:.2f})")
    if args.out:
        print(f"wrote {model.report_dir(args.out) / 'search.md'} and search.json")


def budget(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} pp cannot be met: a drop budget is >= 0")
    return value


MCU_FIELDS = ("file", "config", "top1", "top1_perf200", "litert_top1", "bitexact_ref_kernels", "differs_ref_kernels",
              "ref_kernels_first_differ_at", "differs_xnnpack", "differs_xnnpack_top1", "arena_bytes", "arena", "flash_bytes",
              "flash", "ops", "tflm_s")


def cmd_mcu(args) -> None:
    from r8.jobs.mcu import mcu_job
    from r8.report.blocks import markdown
    from r8.report.mcu import mcu_blocks
    from r8.runtimes import mcu

    for f in args.tflite:  # a file TFLM cannot take is refused before any work
        mcu.interpreter(f)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # stdout: the JSON alone
        model, data = model_and_data(args)
        rows = [(model.stem, r) for r in mcu_job(model, data, args.tflite, progress=not args.json)]
    if args.json:
        print(json.dumps({"rows": [{k: v for k, v in r.to_json().items() if k in MCU_FIELDS} for _, r in rows]}))
        return
    print(markdown(mcu_blocks(rows)))


def cmd_calibrate(args) -> None:
    import shutil

    from r8.calibration import calibration_file
    from r8.core.cache import atomic_write

    model, data = model_and_data(args)
    path, _ = calibration_file(data, args.n, args.seed, args.source, model.num_classes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda tmp: shutil.copyfile(path, tmp))
    print(f"wrote {args.out} ({data.name} {args.source}, n={args.n}, seed={args.seed})")


def cmd_study(args) -> None:
    from r8.jobs.study import STUDY_SEEDS, STUDY_SIZES, study_job

    model, data = model_and_data(args)
    result = study_job(model, data, args.out, tuple(args.sizes or STUDY_SIZES), tuple(args.seeds or STUDY_SEEDS),
                       args.configs)
    for s in result.summary:
        print(f"{s.backend} {s.config} n={s.n}: mean drop {s.mean_drop_pp:.3f} pp "
              f"(std {s.std_drop_pp:.3f}, {s.min_drop_pp:.2f}..{s.max_drop_pp:.2f})")
    out = model.report_dir(args.out)
    print(f"wrote {out / 'study.md'} and {out / 'study.json'}; open {args.out / 'index.html'}")


def cmd_benchmark(args) -> None:
    from r8.jobs.benchmark import benchmark_job

    model, data = model_and_data(args)
    benchmark_job(model, data, args.out, args.repeat, args.cap_s, args.best_drop_pp, tuple(args.pytest_args), args.verbose)
    out = model.report_dir(args.out)
    print(f"wrote {out / 'benchmark.md'} and {out / 'benchmark.json'}; open {args.out / 'index.html'}")


def cmd_download(args) -> None:
    from r8.data import download_cifar10, download_mlcommons

    print(f"CIFAR-10 verified in {download_cifar10(args.root)}")
    print(f"MLCommons model files verified in {download_mlcommons(Path(args.root) / 'mlcommons')}")


def cmd_cache(args) -> None:
    from collections import Counter

    from r8.core import cache

    if args.action == "key":
        print(cache.ci_key(args.model or [paths.keras_model_path()]))
        return
    if args.action == "clean":
        removed, freed = cache.clean(args.root)
        print(f"removed {removed} artifacts ({freed / 2**20:.1f} MiB) from {args.root}")
        return
    rows = cache.verify(args.root)
    bad = [r for r in rows if r["status"] in ("damaged", "missing", "unreadable")]
    if args.json:
        print(json.dumps({"root": str(args.root), "artifacts": rows}))
    else:
        counts = Counter(r["status"] for r in rows)
        print(f"{args.root}: " + (", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "empty"))
        for r in rows:
            if r["status"] != "ok":
                print(f"  {r['status']:<10} {r['path']}")
    if bad:  # not served: rebuilt when next used; the exit status lets CI notice
        raise SystemExit(1)


def cmd_report(args) -> None:
    from r8.report.files import append_step_summary
    from r8.report.merge import merge_reports, summary

    page = merge_reports(args.dirs, args.out)
    print(f"merged {len(args.dirs)} reports folder(s) into {args.out}; open {page}")
    append_step_summary(summary(args.out))


def add_inputs(p, gates: tuple = ()) -> None:
    """--model and --data (and the thresholds named in ``gates``) of a job."""
    p.add_argument("--model", type=Path, default=paths.keras_model_path(),
                   help="any model file r8 converts (default: the MLPerf Tiny IC01 ResNet8)")
    p.add_argument("--data", default="cifar10", help="cifar10 (default) or FILE.npz with x_train, y_train, x_test, y_test")
    add_gate_options(p.add_argument, gates)


def add_model_commands(sub) -> None:
    p = sub.add_parser("convert", help="convert a model file (.h5, .keras, .tflite, .onnx, .pt2) to a torch.export .pt")
    p.add_argument("--model", type=Path, default=paths.keras_model_path())
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--route", choices=("r8", "onnx2torch"), default="r8",
                   help="r8: r8's own converter (default, NCHW; .onnx and .pt2 through onnx2torch, checked node by "
                        "node); onnx2torch: a Keras or .tflite file through tf2onnx then onnx2torch (needs tensorflow; "
                        "keeps Keras's NHWC input)")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("inspect", help="the layer (op) table of a model file and what r8 cannot convert")
    p.add_argument("--model", type=Path, default=paths.keras_model_path())
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("evaluate", help="top-1 overall and per class")
    p.add_argument("--backend", choices=("keras", "torch"), required=True)
    add_inputs(p)
    p.add_argument("--subset", default="test", help="test (default), train, or a subset of the data (cifar10: "
                                                     "perf200, perf200_v0.5)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda, for the torch backend")
    p.set_defaults(run=cmd_evaluate)


def add_int8_commands(sub) -> None:
    from r8.calibration import DEFAULT_SIZE, SOURCES

    p = sub.add_parser("quantize", help="int8 quantize every default config, evaluate, report, gate")
    p.add_argument("--backend", default="all", help="a backend of the registry (ort, torch, ...) or all (default)")
    add_inputs(p, ("min_top1", "max_drop_pp", "best_drop_pp"))
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports root: OUT/<model stem>/, OUT/index.html")
    p.add_argument("--configs", nargs="+", help="only these backend/config ids, e.g. ort/qop-u8s8-perchannel-minmax "
                                                  "(default: every default config of --backend)")
    p.add_argument("--calibration", choices=SOURCES, default="train",
                   help="calibration images: stratified training images (default), or the "
                        "MLCommons list, which overlaps the test set (comparison only)")
    p.add_argument("--calibration-size", type=int, default=DEFAULT_SIZE, help="training images, a multiple of the class count")
    p.add_argument("--calibration-seed", type=int, default=0)
    p.add_argument("--mcu", action="store_true", help="also run each backend's best int8 .tflite and the published one on TFLite "
                                                        "Micro (a row each: accuracy, arena, flash; `r8 mcu` runs them all)")
    p.set_defaults(run=cmd_quantize)

    p = sub.add_parser("mcu", help="will it run on a microcontroller? the model's int8 .tflite files (and any given) "
                                   "on TFLite Micro: top-1, agreement with LiteRT, arena (RAM) and flash bytes, ops")
    add_inputs(p)
    p.add_argument("--tflite", type=Path, nargs="+", default=[], help="more int8 .tflite files to measure")
    p.add_argument("--json", action="store_true", help='{"rows": [...]} on stdout')
    p.set_defaults(run=cmd_mcu)

    p = sub.add_parser("search", help="when int8 loses too much: the fewest layers to keep float so the drop meets a budget")
    add_inputs(p)
    p.add_argument("--max-drop-pp", type=budget, required=True, help="the drop budget, pp: met when the validation "
                   "drop's paired upper 95 %% bound is within it")
    p.add_argument("--backend", help="one backend that can keep layers float (default: every such backend)")
    p.add_argument("--config", default="best", help="the config to start from: best (default: each backend's default config "
                   "with the smallest validation drop), worst (the largest), or a config id of --backend")
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports root: OUT/<model stem>/search.{md,json}")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("calibrate", help="write the calibration set (indices, seed, sha256) as .npz")
    add_inputs(p)
    p.add_argument("--n", type=int, default=DEFAULT_SIZE, help="images, a multiple of the class count (train source)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", choices=SOURCES, default="train")
    p.add_argument("-o", "--out", type=Path, required=True)
    p.set_defaults(run=cmd_calibrate)


def add_study_commands(sub) -> None:
    from r8.jobs.study import STUDY_SEEDS, STUDY_SIZES
    from r8.runtimes.timing import CAP_S

    p = sub.add_parser("study", help="int8 drop over calibration sizes and seeds, each backend's two best configs")
    add_inputs(p)
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--sizes", type=int, nargs="+", help=f"calibration sizes (default {' '.join(map(str, STUDY_SIZES))})")
    p.add_argument("--seeds", type=int, nargs="+", help=f"calibration seeds (default {' '.join(map(str, STUDY_SEEDS))})")
    p.add_argument("--configs", nargs="+", help="backend/config ids, e.g. ort/qop-u8s8-perchannel-minmax "
                                                  "(default: each backend's two best default configs)")
    p.set_defaults(run=cmd_study)

    p = sub.add_parser("benchmark", help="CPU inference benchmarks of every runtime, report + plots")
    add_inputs(p, ("best_drop_pp",))
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--repeat", type=int, default=1, help="run the whole benchmark N times; report medians")
    p.add_argument("--cap-s", type=float, default=CAP_S, help=f"each paired comparison's time cap, s (default {CAP_S:.0f})")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k onnxruntime)")
    p.set_defaults(run=cmd_benchmark)


def add_file_commands(sub) -> None:
    p = sub.add_parser("download", help="fetch and verify CIFAR-10 and the MLCommons files into a data root")
    p.add_argument("--root", type=Path, default=paths.data_dir())
    p.set_defaults(run=cmd_download)

    p = sub.add_parser("cache", help="verify: check every cached artifact against the sha256 its build recorded "
                                      "(exit 1 if any is damaged); clean: remove every artifact r8 built; "
                                      "key: the key a CI cache of R8_CACHE_DIR is saved under")
    p.add_argument("action", choices=("verify", "clean", "key"))
    p.add_argument("--model", type=Path, action="append", help="key: a model file the cache serves (repeatable; "
                                                                "default: the MLPerf Tiny IC01 ResNet8)")
    p.add_argument("--root", type=Path, default=paths.cache_dir(), help="the cache (default: R8_CACHE_DIR)")
    p.add_argument("--json", action="store_true", help="verify: one JSON object on stdout")
    p.set_defaults(run=cmd_cache)

    p = sub.add_parser("report", help="merge: the reports folders of several shards (CI runners) as one, with one index; "
                                       "a row measured twice with other numbers is refused by name")
    p.add_argument("action", choices=("merge",))
    p.add_argument("dirs", type=Path, nargs="+", help="reports folders: reports/ or $R8_CACHE_DIR/reports of each shard")
    p.add_argument("--out", type=Path, default=Path("reports"), help="the merged reports root (default: reports)")
    p.set_defaults(run=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    """Every command, its options and the function that runs it (``run``)."""
    parser = argparse.ArgumentParser(prog="python -m r8", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show warnings and TensorFlow/ONNX Runtime/torch log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_model_commands, add_int8_commands, add_study_commands, add_file_commands):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from r8.core import console

    args = build_parser().parse_args(argv)
    try:
        if threads := environment.threads():  # R8_THREADS: torch and TensorFlow too, not only r8's own sessions
            environment.limit_threads(threads)
        with console.run(args.verbose):
            args.run(args)
    except R8Error as e:
        print(f"r8: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        raise
    except Exception as e:  # the last resort: a crash must never read as a verdict on the model
        where = f" with --model {args.model}" if hasattr(args, "model") else ""
        print(f"r8: internal error (a bug in r8, not a verdict on the model): {type(e).__name__}: {e} — "
              f"running `{args.command}`{where}; rerun with -v for the traceback and report it", file=sys.stderr)
        if args.verbose:
            raise
        return 3
    return 0
