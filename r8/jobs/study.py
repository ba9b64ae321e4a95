"""The job behind `python -m r8 study`: each gated backend's best configs over calibration sizes
and seeds, the drop's mean and spread per (config, size). Reports go to ``OUT/<model stem>/``."""

from itertools import groupby
from pathlib import Path

import numpy as np

from r8 import backends
from r8.backends import Backend
from r8.calibration import CalibrationSet, calibration_set
from r8.core import console
from r8.data import Dataset
from r8.jobs.quantize import config_row, find_config, fp32_predictions
from r8.metrics import top1
from r8.model import Model, describe
from r8.report.files import append_step_summary, stamp
from r8.report.index import write_index
from r8.report.study import write_study_report
from r8.results import StudyResult, StudyRun, StudySummary
from r8.rows import ranked

STUDY_SIZES = (100, 250, 500, 1000, 2000)
STUDY_SEEDS = (0, 1, 2, 3, 4)


def best_configs(model: Model, data: Dataset, b: Backend, fp32_probs: np.ndarray, cal: CalibrationSet,
                 k: int = 2) -> list:
    """The backend's ``k`` default configs with the smallest drop (calibration set ``cal``)."""
    by_id = {c.id: c for c in b.configs(available=True)}
    rows = [config_row(model, data, b.name, c, fp32_probs, cal) for c in by_id.values()]
    return [by_id[r.config_id] for r in ranked(rows)[:k]]


def seed_runs(model: Model, data: Dataset, backend: str, config, fp32_probs: np.ndarray, n: int, seeds) -> list[StudyRun]:
    """One study run per calibration seed at calibration size ``n``."""
    runs = []
    for seed in seeds:
        cal = calibration_set(data, n, seed, num_classes=model.num_classes)
        row = config_row(model, data, backend, config, fp32_probs, cal)
        # TFLite calibrates inside its converter: all in quantize_s
        runs.append(StudyRun(backend, config.id, n, seed, row.top1, row.drop_pp, row.calibration_s or 0.0, row.quantize_s))
    return runs


def summarize(runs: list[StudyRun]) -> list[StudySummary]:
    """Mean, spread and range of the drop over seeds, per (backend, config, n)."""
    def key(r):
        return r.backend, r.config, r.n
    out = []
    for (backend, config, n), group in groupby(sorted(runs, key=key), key=key):
        drops = np.array([r.drop_pp for r in group])
        out.append(StudySummary(backend, config, n, len(drops), round(float(drops.mean()), 4),
                                round(float(drops.std(ddof=1)) if len(drops) > 1 else 0.0, 4),
                                float(drops.min()), float(drops.max())))
    return out


def study_job(model: Model, data: Dataset, out_root: Path, sizes=STUDY_SIZES, seeds=STUDY_SEEDS,
              configs: list[str] | None = None, per_backend: int = 2, progress: bool = True) -> StudyResult:
    """Calibration-size and -seed study of ``configs`` (``backend/config-id``), by default each
    gated backend's ``per_backend`` best default configs; writes OUT/<stem>/study.*."""
    data.check(model)
    fp32_probs = fp32_predictions(model, data, progress)
    default_cal = calibration_set(data, num_classes=model.num_classes)
    chosen = ([find_config(c) for c in configs] if configs else
              [(b, c) for b in backends.gated() for c in best_configs(model, data, b, fp32_probs, default_cal, per_backend)])
    plan = [(b, c, n) for b, c in chosen for n in sizes]
    runs = []
    for b, config, n in console.progress(plan, "study (config x size)", progress):
        runs += seed_runs(model, data, b.name, config, fp32_probs, n, seeds)
    result = StudyResult(**describe(model, data), fp32_top1=top1(fp32_probs, data.test.labels), sizes=list(sizes),
                         seeds=list(seeds), runs=runs, summary=summarize(runs), **stamp("study.study_job"))
    _, md = write_study_report(result, model.report_dir(out_root))
    append_step_summary(md.read_text())
    write_index(out_root)
    return result
