"""The gates every model is held to, in one place: the jobs, the reports and the suite read them
from here (or from a :class:`Thresholds` value the CLI or the suite's options built)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    min_top1: float = 0.85  # fp32 top-1 (fraction) on the test images
    max_drop_pp: float = 5.0  # every int8 config: fp32 minus int8 top-1, percent points
    best_drop_pp: float = 0.2  # each gated backend's best int8 config
    prob_atol: float = 1e-5  # converted vs original: max |difference| of any output probability


DEFAULT = Thresholds()
