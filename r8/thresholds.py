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

# The gates a user sets, each an option of the CLI's jobs (--min-top1) and of the pytest plugin (--r8-min-top1)
GATES = {"min_top1": "fp32 top-1 on the test images, a fraction", "max_drop_pp": "every int8 config's drop, pp",
         "best_drop_pp": "each gated backend's best int8 drop, pp"}


def add_gate_options(add_option, names=tuple(GATES), prefix: str = "--") -> None:
    """Add the gates ``names`` as float options through ``add_option`` (argparse's add_argument
    or pytest's addoption), named ``prefix`` + the gate with dashes."""
    for name in names:
        add_option(f"{prefix}{name.replace('_', '-')}", type=float, default=getattr(DEFAULT, name),
                   help=f"gate: {GATES[name]} (default {getattr(DEFAULT, name)})")
