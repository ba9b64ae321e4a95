"""The job behind `python -m r8 search`: when int8 loses too much, the fewest layers to keep
float so that the drop meets a budget, per backend.

Per backend, from a given int8 config (default: the backend's best default config it can mix on the
validation images; ``worst`` for its worst, as a hard-model gate starts):
1. the per-layer SQNR of that config against fp32 on calibration images (where the backend
   measures it), and the validation drop with one conv / linear layer or residual add float
   (:func:`r8.frontends.converted_layers.float_units`), and with a layer and the next one run float (a float layer's
   output stays int8 where its consumer is): the units;
2. greedy forward selection: each step keeps float one more unit, measured *beside the layers
   already float* (after the one layer that matters, what each layer recovers alone says little
   about what it adds), until the validation drop's paired upper 95 % bound is within the budget.
   A step takes the cheapest unit (fewest MACs added) among those that meet the budget, or, where
   none does, among those the validation images cannot tell apart from the best one (exact
   McNemar on their predictions, p >= 0.05): noise never buys MACs.

Every decision is made on a validation split of the *training* images (stratified, seeded,
disjoint from the calibration images); the test images are used once, for the final row. Each
backend keeps a layer float its own way (:meth:`r8.backends.Backend.build_mixed`: ORT's
``nodes_to_exclude``, FX's per-module qconfig None, the LiteRT quantizer's NO_QUANTIZE rule).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r8 import artifacts, backends
from r8.backends import Backend
from r8.calibration import CalibrationSet, stratified_indices
from r8.core import console
from r8.core.errors import R8Error
from r8.data import Dataset, Split
from r8.frontends.converted_layers import float_units, layer_macs
from r8.metrics import mcnemar, paired_drop, predict, top1
from r8.model import Model, describe
from r8.report.files import stamp
from r8.report.index import write_index
from r8.report.search import write_search_report
from r8.results import SearchResult, SearchRow, Sensitivity, Step
from r8.runtimes.runners import TorchRunner

VALIDATION_SIZE = 10_000  # large enough that the paired upper bound sits close above the point drop
SQNR_IMAGES = 200  # calibration images the per-layer SQNR is measured on


class BudgetNotMet(R8Error):
    """The budget cannot be met on this model, even with every conv / linear layer and add float (the CLI exits 1)."""


def validation_split(data: Dataset, cal: CalibrationSet, n: int = VALIDATION_SIZE, seed: int = 0) -> Split:
    """Up to ``n`` training images, an equal number per class (as many as the smallest class has
    left), drawn with ``seed`` from the training images the calibration set does not use."""
    labels = data.train.labels
    num_classes = int(max(labels.max(), data.test.labels.max())) + 1
    pool = np.setdiff1d(np.arange(len(labels)), cal.indices if cal.source == "train" else [])
    per_class = min(n // num_classes, *(int(np.sum(labels[pool] == c)) for c in range(num_classes)))
    if per_class < 1:
        raise R8Error(f"data {data.name}: no training images are left for a validation split beside the "
                      f"{len(cal.labels)} calibration images (a class has none)")
    return data.train.take("validation", pool[stratified_indices(labels[pool], per_class * num_classes, seed, num_classes)])


@dataclass(frozen=True)
class Measured:
    step: Step
    right: np.ndarray  # per validation image: top-1 correct


def _indistinguishable(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two models' per-image correctness could differ by chance (exact McNemar, p >= 0.05)."""
    return mcnemar(a, b)[2] >= 0.05


def next_unit(tried: dict[tuple, Measured], added_macs: dict[tuple, int], budget_pp: float) -> tuple:
    """The unit a search step keeps float: the cheapest (fewest MACs added) of those that meet the
    budget, or where none does, of those the validation images cannot tell apart from the one with
    the lowest upper bound."""
    def upper(u):
        return tried[u].step.validation_drop_ci95_pp[1]

    best = min(tried, key=lambda u: (upper(u), tried[u].step.validation_drop_pp, added_macs[u]))
    meeting = [u for u in tried if upper(u) <= budget_pp]
    ties = meeting or [u for u in tried if _indistinguishable(tried[u].right, tried[best].right)]
    return min(ties, key=lambda u: (added_macs[u], upper(u), tried[u].step.validation_drop_pp))


SPEED_ROUNDS = {1: 30, 256: 5}  # timed calls per batch size (the median is kept)


def speed(runner, images: np.ndarray) -> dict:
    """Median latency at batch 1 and throughput at batch 256 (after a warm-up call each): a
    report figure on this machine, not a benchmark (``python -m r8 benchmark`` is)."""
    out = {}
    for batch, rounds in SPEED_ROUNDS.items():
        x = images[:batch]
        runner.predict(x)
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            runner.predict(x)
            seconds.append(time.perf_counter() - start)
        out[batch] = float(np.median(seconds))
    return {"ms_bs1": round(out[1] * 1000, 3), "img_per_s_bs256": round(len(images[:256]) / out[256], 1)}


def _drop(fp32_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> tuple[float, tuple[float, float]]:
    paired = paired_drop(fp32_probs, probs, labels)
    return round((top1(fp32_probs, labels) - top1(probs, labels)) * 100, 4), tuple(paired["drop_ci95_pp"])


START_RULES = {"best": min, "worst": max}  # a start named by rule: the default config with the smallest / largest drop


def default_start(b: Backend, model: Model, cal: CalibrationSet, val: Split, fp32_val: np.ndarray, rule: str = "best"):
    """The backend's default config with the smallest (``best``) or largest (``worst``) validation
    drop among those it can mix (NNCF, which r8 does not mix: among those it builds, the start of
    its accuracy control)."""
    drops = {}
    for config in b.configs(available=True):
        try:
            drops[config] = _drop(fp32_val, _probs(b, model, config, cal, (), val), val.labels)[0]
        except R8Error:
            continue  # a flow that cannot keep layers float (or cannot take this model)
    if not drops:
        raise R8Error(f"{model.path}: no default {b.name} config can keep layers float")
    return START_RULES[rule](drops, key=drops.get)


def start_config(b: Backend, start: str, model: Model, cal: CalibrationSet, val: Split, fp32_val: np.ndarray):
    """``start``: a rule of START_RULES or one of the backend's config ids."""
    return default_start(b, model, cal, val, fp32_val, start) if start in START_RULES else b.config(start)


def _probs(b: Backend, model: Model, config, cal: CalibrationSet, float_layers: tuple, split: Split) -> np.ndarray:
    path = b.build(model, config, cal) if not (b.keeps_layers_float or float_layers) else \
        b.build_mixed(model, config, cal, float_layers)
    return predict(b.runner(config, path), split.images, progress=False)


def search_backend(model: Model, data: Dataset, b: Backend, config, cal: CalibrationSet, val: Split, budget_pp: float,
                   fp32_val: np.ndarray, fp32_test: np.ndarray, macs: dict[str, int], progress: bool = False) -> SearchRow:
    """The fewest float layers of ``config`` whose validation drop's upper bound is within ``budget_pp``."""
    sqnr = {}
    if b.measures_sqnr and b.sqnr_for(config):
        measured = b.layer_sqnr(model, config, cal, cal.images[:SQNR_IMAGES])[1]
        for layer in macs:
            values = [v for k, v in measured.items() if k == layer or k.startswith(f"{layer} (")]
            sqnr[layer] = min(values) if values else None

    def measure(float_layers: tuple[str, ...]) -> Measured:
        probs = _probs(b, model, config, cal, float_layers, val)
        return Measured(Step(float_layers, *_drop(fp32_val, probs, val.labels)), probs.argmax(1) == val.labels)

    steps = [measure(()).step]
    sensitivity = []
    if steps[0].validation_drop_ci95_pp[1] > budget_pp:
        # Each layer alone, and each layer with the next one run: a float layer's output is still
        # quantized where its consumer is int8, so an error at a layer boundary needs both float.
        names = list(macs)
        units = [(name,) for name in names] + list(zip(names, names[1:]))
        tried = {unit: measure(unit) for unit in console.progress(units, f"{b.name} layers float alone", progress, step=False)}
        sensitivity = [Sensitivity(u, sum(macs[n] for n in u), sqnr.get(u[0]), tried[u].step.validation_drop_pp,
                                   tried[u].step.validation_drop_ci95_pp) for u in units]
        float_layers: tuple[str, ...] = ()
        while True:
            pick = next_unit(tried, {u: sum(macs[n] for n in u if n not in float_layers) for u in tried}, budget_pp)
            float_layers = tried[pick].step.float_layers
            steps.append(tried[pick].step)
            left = [u for u in units if not set(u) <= set(float_layers)]
            if steps[-1].validation_drop_ci95_pp[1] <= budget_pp or not left:
                break
            tried = {u: measure(float_layers + tuple(n for n in u if n not in float_layers))
                     for u in console.progress(left, f"{b.name} beside {len(float_layers)} float layers", progress, step=False)}
    final = steps[-1]
    path = b.build_mixed(model, config, cal, final.float_layers)
    runner = b.runner(config, path)
    probs = predict(runner, data.test.images, progress=False)  # the test images: once
    drop, ci = _drop(fp32_test, probs, data.test.labels)
    int8 = b.build_mixed(model, config, cal, ())
    timed = {"mixed": speed(runner, val.images), "int8": speed(b.runner(config, int8), val.images),
             "fp32": speed(TorchRunner(artifacts.torch_fp32(model)), val.images)}
    return SearchRow(b.name, config.id, budget_pp, final.validation_drop_ci95_pp[1] <= budget_pp, final.float_layers,
                     round(sum(macs[name] for name in final.float_layers) / sum(macs.values()), 4),
                     top1(probs, data.test.labels), drop, ci, final.validation_drop_pp, final.validation_drop_ci95_pp,
                     tuple(steps), tuple(sensitivity), str(path), timed, mcu_bytes(path, int8) if b.mcu else None)


def mcu_bytes(mixed: Path, int8: Path) -> dict:
    """TFLite Micro's arena (the smallest that runs) and flash (the file) of the mixed and full int8 .tflite."""
    from r8.runtimes import mcu

    return {k: {"arena_bytes": mcu.arena_bytes(f)["needed"], "flash_bytes": mcu.flash_bytes(f)["total"]}
            for k, f in (("mixed", mixed), ("int8", int8))}


def nncf_anchor(model: Model, data: Dataset, cal: CalibrationSet, val: Split, budget_pp: float, fp32_val: np.ndarray,
                fp32_test: np.ndarray, macs: dict[str, int], start: str = "best") -> SearchRow | None:
    """NNCF's own answer to the same question (``nncf.quantize_with_accuracy_control`` at the same
    budget, on the same calibration and validation images), from the start r8's searches take
    (``start``: a rule of START_RULES or an NNCF config id), scored as r8's rows are; None where NNCF
    is not installed."""
    from r8.backends.nncf import accuracy_controlled
    from r8.backends.ort import float_layers

    b = backends.backend("nncf")
    if b.unavailable(b.default[0]):
        return None
    config = start_config(b, start, model, cal, val, fp32_val)
    path = accuracy_controlled(model, config, cal, val, budget_pp)
    runner = b.runner(config, path)
    val_drop, val_ci = _drop(fp32_val, predict(runner, val.images, progress=False), val.labels)
    probs = predict(runner, data.test.images, progress=False)
    drop, ci = _drop(fp32_test, probs, data.test.labels)
    layers = tuple(name for name in macs if name in float_layers(model, path))
    timed = {"mixed": speed(runner, val.images), "int8": speed(b.runner(config, b.build(model, config, cal)), val.images),
             "fp32": speed(TorchRunner(artifacts.torch_fp32(model)), val.images)}
    return SearchRow("nncf", f"accuracy-control-{config.id}", budget_pp, val_ci[1] <= budget_pp, layers,
                     round(sum(macs[n] for n in layers) / sum(macs.values()), 4), top1(probs, data.test.labels), drop, ci,
                     val_drop, val_ci, (Step(layers, val_drop, val_ci),), (), str(path), timed)


def searched_backends(names: list[str] | None) -> list:
    """The backends a search of ``names`` (default: every installed one that can keep layers float) runs,
    NNCF's accuracy control aside; R8Error for a name unknown or for a backend that cannot keep layers float."""
    chosen = [backends.backend(n) for n in names if n != "nncf"] if names else \
        [b for b in backends.registry().values() if b.keeps_layers_float and b.configs(available=True)]
    for b in chosen:
        if not b.keeps_layers_float:
            raise R8Error(f"backend {b.name} cannot keep layers float; choose from "
                          f"{', '.join(x.name for x in backends.registry().values() if x.keeps_layers_float)}")
    return chosen


def search_job(model: Model, data: Dataset, cal: CalibrationSet, budget_pp: float, out: Path | None,
               backend_names: list[str] | None = None, starts: dict[str, str] | None = None, start: str = "best",
               progress: bool = True) -> SearchResult:
    """Search each backend that can keep layers float (or ``backend_names``), from ``starts``
    (backend -> config id or rule) or else ``start`` (a rule of START_RULES); writes
    ``out/<model stem>/search.{json,md}`` and charts. BudgetNotMet where no backend meets it."""
    if budget_pp < 0:
        raise ValueError(f"a drop budget of {budget_pp} pp cannot be met: it must be >= 0")
    chosen = searched_backends(backend_names)
    fp32 = artifacts.torch_fp32(model)
    layers = layer_macs(fp32)
    if len(layers) < 2:
        raise BudgetNotMet(f"{model.path}: it has {len(layers)} conv / linear layer; a search for float layers needs two or more")
    macs = {name: layers.get(name, 0) for name in float_units(fp32)}  # the units it can keep float; an add has no MACs
    val = validation_split(data, cal)
    runner = TorchRunner(fp32)
    fp32_val, fp32_test = predict(runner, val.images, progress=False), predict(runner, data.test.images, progress=False)
    rows = []
    for b in console.progress(chosen, "search", progress):
        config = start_config(b, (starts or {}).get(b.name, start), model, cal, val, fp32_val)
        rows.append(search_backend(model, data, b, config, cal, val, budget_pp, fp32_val, fp32_test, macs, progress))
    if backend_names is None or "nncf" in backend_names:
        anchor = nncf_anchor(model, data, cal, val, budget_pp, fp32_val, fp32_test, macs, (starts or {}).get("nncf", start))
        rows += [anchor] if anchor else []
    result = SearchResult(**describe(model, data, cal), budget_pp=budget_pp, validation={"n": len(val.labels), "source": "train"},
                          test_n=len(data.test.labels), fp32_top1=top1(fp32_test, data.test.labels), macs=macs,
                          speed_rounds={str(batch): n for batch, n in SPEED_ROUNDS.items()}, rows=rows,
                          **stamp("search.search_job"))
    if out is not None:
        write_search_report(result, model.report_dir(out))
        write_index(Path(out))
    if not any(r.met for r in ([r for r in rows if r.backend != "nncf"] or rows)):  # NNCF's row decides only alone
        raise BudgetNotMet(f"{model.path}: no backend meets a {budget_pp} pp drop even with every conv / linear layer and "
                           "residual add float (the ops between them, pooling among them, stay int8): "
                           + "; ".join(f"{r.backend} {r.config}: validation drop {r.validation_drop_pp:.2f} pp, upper bound "
                                       f"{r.validation_drop_ci95_pp[1]:.2f}" for r in rows))
    return result
