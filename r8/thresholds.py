"""The gates every model is held to, in one place: the thresholds a user sets, and each gate as a
typed :class:`Gate` built here from what a job measured. The jobs, the reports, the CLI and the
pytest plugin read gates; none builds one."""

from dataclasses import asdict, dataclass

from r8.rows import REFERENCE_BACKEND, Int8Row, McuRow, Row, best_row


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

MCU_MARGIN = 1.05  # r8's arena and flash may exceed the published int8 model's by 5 % at most


def add_gate_options(add_option, names=tuple(GATES), prefix: str = "--") -> None:
    """Add the gates ``names`` as float options through ``add_option`` (argparse's add_argument
    or pytest's addoption), named ``prefix`` + the gate with dashes."""
    for name in names:
        add_option(f"{prefix}{name.replace('_', '-')}", type=float, default=getattr(DEFAULT, name),
                   help=f"gate: {GATES[name]} (default {getattr(DEFAULT, name)})")


@dataclass(frozen=True)
class Gate:
    """One gate on one model: what was measured against its threshold. A gate that a backend waives
    on this CPU (``waived_because``) and misses is shown, never counted as passed."""

    name: str
    threshold: float | str
    measured: float | str
    passed: bool
    waived_because: str | None = None

    @property
    def failed(self) -> bool:
        """Missed and not waived: what fails a job and a test."""
        return not self.passed and self.waived_because is None

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else f"not met on this CPU: {self.waived_because}" if self.waived_because else "FAIL"

    def message(self, stem: str) -> str:
        """The line a missed gate prints: which model, which gate, the threshold and what was measured
        (and, where this CPU waives it, why)."""
        measured = f"{self.measured:.4g}" if isinstance(self.measured, float) else self.measured
        text = f"{stem}: gate '{self.name}' {'not met on this CPU' if self.waived_because else 'failed'}: " \
               f"measured {measured}, threshold {self.threshold}"
        return f"{text} ({self.waived_because})" if self.waived_because else text

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Gate":
        return cls(**d)


def at_least(name: str, measured: float, threshold: float) -> Gate:
    return Gate(name, threshold, measured, measured >= threshold)


def at_most(name: str, measured: float, threshold: float, waived_because: str | None = None) -> Gate:
    passed = measured <= threshold
    return Gate(name, threshold, measured, passed, None if passed else waived_because)


def best_drop_gate(backend: str, best: Int8Row, threshold: float, waiver: str | None) -> Gate:
    """A backend's best int8 config against its gate (``waiver``: why this CPU may miss it)."""
    return at_most(f"best int8 drop pp {backend}", best.drop_pp, threshold, waiver)


def quantize_gates(fp32_top1: float, rows: list[Row], thresholds: Thresholds, waivers: dict[str, str | None],
                   mcu_backends: tuple[str, ...]) -> list[Gate]:
    """Every gate of a quantize report: fp32 top-1, each int8 row's drop, the best drop of each gated
    backend (``waivers``: gated backend -> its waiver on this CPU, or None), and the TFLM gates."""
    own = [r for r in rows if isinstance(r, Int8Row)]
    out = [at_least("fp32 top-1", fp32_top1, thresholds.min_top1)]
    out += [at_most(f"int8 drop pp {r.backend}-{r.config}", r.drop_pp, thresholds.max_drop_pp) for r in own]
    for name, waiver in waivers.items():
        if best := best_row(own, name):
            out.append(best_drop_gate(name, best, thresholds.best_drop_pp, waiver))
    return out + mcu_gates(rows, mcu_backends)


def mcu_gates(rows: list[Row], mcu_backends: tuple[str, ...]) -> list[Gate]:
    """On r8's best int8 .tflite run on TFLM (from one of ``mcu_backends``, where ``quantize --mcu``
    ran): its top-1 is LiteRT's within the paired 95 % interval, and (where the model has a published
    int8 .tflite) its arena and flash are within 5 % of that model's."""
    mcu = [r for r in rows if isinstance(r, McuRow)]
    ours = [r for r in mcu if r.source_backend in mcu_backends]
    if not ours:
        return []
    best = best_row(ours, kind=McuRow)
    lo, hi = best.vs_litert_ci95_pp
    out = [Gate(f"TFLM top-1 = LiteRT's, {best.config} (pp, 95 % CI)", "0 in CI",
                best.top1 * 100 - best.litert_top1 * 100, lo <= 0 <= hi)]
    for ref in (r for r in mcu if r.source_backend == REFERENCE_BACKEND):
        out += [Gate(f"TFLM {what} bytes, {best.config}", round(MCU_MARGIN * getattr(ref, key)), getattr(best, key),
                     getattr(best, key) <= MCU_MARGIN * getattr(ref, key))
                for what, key in (("arena", "arena_bytes"), ("flash", "flash_bytes"))]
    return out
