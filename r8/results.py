"""What each job returns: a typed result its caller reads. Each has one ``to_json`` (the JSON file
its report is rendered from, whose keys are the field names) and one ``from_json`` (that file read
back). Typed parts (rows, gates, search steps) are written and read by their own types."""

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import ClassVar

from r8.core.errors import R8Error
from r8.rows import McuRow, Row, row_from_json
from r8.thresholds import Gate


def to_json(value):
    """``value`` as JSON: a typed value by its own ``to_json``, containers element by element."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def known_fields(cls, d: dict, what: str) -> dict:
    """The entries of ``d`` that are fields of ``cls``; R8Error naming any required one missing."""
    names = {f.name for f in fields(cls)}
    missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise R8Error(f"a {what} lacks {', '.join(missing)}: written by an older r8? Run the job again")
    return {k: v for k, v in d.items() if k in names}


@dataclass
class JobResult:
    """What every job's result says it was measured on, and which command made it when."""

    model: dict = field(default_factory=dict)  # r8.model.describe: stem, file, sha256, input_shape, classes
    data: dict = field(default_factory=dict)  # name, sha256, test and train sizes
    command: str = ""  # which command made it (r8.report.files.stamp)
    generated: str = ""  # and when
    read_row: ClassVar = None  # how a row of ``rows`` is read from JSON, where the result has rows

    def to_json(self) -> dict:
        """The fields as JSON; ``command`` and ``generated`` only where a job stamped them."""
        return {f.name: to_json(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) != "" or f.name not in ("command", "generated")}

    @classmethod
    def from_json(cls, d: dict):
        values = known_fields(cls, d, cls.__name__)
        if cls.read_row is not None:
            values["rows"] = [cls.read_row(r) for r in d.get("rows", [])]
        return cls(**values)


@dataclass
class QuantizeResult(JobResult):
    """``python -m r8 quantize``: every int8 row, the gates, and what the report shows beside them."""

    fp32_top1: float = 0.0
    calibration: dict = field(default_factory=dict)  # r8.calibration.CalibrationSet.summary
    classes: list = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    sqnr: list = field(default_factory=list)  # per-layer SQNR of each backend's best and worst config
    skipped: list = field(default_factory=list)  # {backend, config, reason} of configs a backend refused
    reproducibility: dict = field(default_factory=dict)  # backend -> what its builds depend on
    thresholds: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)  # title -> file name
    notes: dict = field(default_factory=dict)  # a backend's extra report fields (Backend.notes), top-level in JSON

    read_row = staticmethod(row_from_json)

    def to_json(self) -> dict:
        out = super().to_json()
        return {**out, **out.pop("notes")}

    @classmethod
    def from_json(cls, d: dict) -> "QuantizeResult":
        names = {f.name for f in fields(cls)}
        result = super().from_json(d)
        result.gates = [Gate.from_json(g) for g in d.get("gates", [])]
        result.notes = {k: v for k, v in d.items() if k not in names}
        return result


@dataclass
class McuResult(JobResult):
    """``python -m r8 mcu``: each int8 .tflite on TFLite Micro."""

    rows: list[McuRow] = field(default_factory=list)
    read_row = staticmethod(row_from_json)


@dataclass(frozen=True)
class StudyRun:
    """One calibration seed at one calibration size, of one config."""

    backend: str
    config: str
    n: int
    seed: int
    top1: float
    drop_pp: float
    calibration_s: float
    quantize_s: float | None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class StudySummary:
    """The drop over seeds of one config at one calibration size."""

    backend: str
    config: str
    n: int
    seeds: int
    mean_drop_pp: float
    std_drop_pp: float
    min_drop_pp: float
    max_drop_pp: float

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class StudyResult(JobResult):
    """``python -m r8 study``: the int8 drop over calibration sizes and seeds."""

    fp32_top1: float = 0.0
    sizes: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    runs: list[StudyRun] = field(default_factory=list)
    summary: list[StudySummary] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict) -> "StudyResult":
        values = known_fields(cls, d, "study report")
        values["runs"] = [StudyRun(**r) for r in d.get("runs", [])]
        values["summary"] = [StudySummary(**s) for s in d.get("summary", [])]
        return cls(**values)


@dataclass(frozen=True)
class Step:
    """One step of a search: the layers float after it, and its drop on the validation images."""

    float_layers: tuple[str, ...]
    validation_drop_pp: float
    validation_drop_ci95_pp: tuple[float, float]


@dataclass(frozen=True)
class Sensitivity:
    layers: tuple[str, ...]  # one layer, or a layer and the next one run (see r8.jobs.search.search_backend)
    macs: int
    sqnr_db: float | None  # the int8 model's output of the (first) layer against fp32 (None: not measured)
    alone_float_drop_pp: float  # validation drop with only these layers float
    alone_float_drop_ci95_pp: tuple[float, float]


@dataclass(frozen=True)
class SearchRow:
    """One backend's search: the fewest float layers found, and the final row on the test images."""

    backend: str
    config: str
    budget_pp: float
    met: bool
    float_layers: tuple[str, ...]
    float_mac_share: float
    top1: float
    drop_pp: float
    drop_ci95_pp: tuple[float, float]
    validation_drop_pp: float
    validation_drop_ci95_pp: tuple[float, float]
    steps: tuple[Step, ...]
    sensitivity: tuple[Sensitivity, ...]
    artifact: str
    speed: dict  # "mixed" (this row's model), "int8" (the config with no layer float), "fp32": ms_bs1, img_per_s_bs256
    # a .tflite row's TFLite Micro bytes, "mixed" and "int8" as in speed: arena_bytes, flash_bytes (None: not a .tflite)
    mcu: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "SearchRow":
        values = {k: tuple(v) if isinstance(v, list) and k not in ("steps", "sensitivity") else v
                  for k, v in known_fields(cls, d, "search row").items()}
        values["steps"] = tuple(Step(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}) for s in d["steps"])
        values["sensitivity"] = tuple(Sensitivity(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()})
                                      for s in d["sensitivity"])
        return cls(**values)


@dataclass
class SearchResult(JobResult):
    """``python -m r8 search``: per backend, the fewest float layers that meet the drop budget."""

    calibration: dict = field(default_factory=dict)
    budget_pp: float = 0.0
    validation: dict = field(default_factory=dict)  # n, source
    test_n: int = 0
    fp32_top1: float = 0.0
    macs: dict = field(default_factory=dict)  # unit -> MACs (0 for an add)
    speed_rounds: dict = field(default_factory=dict)
    rows: list[SearchRow] = field(default_factory=list)
    read_row = SearchRow.from_json


@dataclass
class BenchmarkRow:
    """One runtime's figures: at batch 1 the latency, at batch 256 the throughput, each the median
    of the runs at the runtime's faster thread count."""

    runtime: str
    precision: str  # fp32, int8, or "overhead" (an identity-sized model: the per-call floor)
    ms_bs1: float
    img_per_s_bs256: float
    config: str = ""
    top1: float | None = None  # None: an overhead row, which classifies nothing
    size_bytes: int = 0
    artifact: str = ""
    reference: bool = False  # a published model file
    threads: dict = field(default_factory=dict)  # "bs1" / "bs256" -> the faster thread count
    by_threads: dict = field(default_factory=dict)  # thread count -> its figures
    iqr_ms_bs1: float = 0.0
    iqr_ms_bs256: float = 0.0
    ms_bs1_runs: list = field(default_factory=list)
    img_per_s_bs256_runs: list = field(default_factory=list)
    iqr_ms_bs1_runs: list = field(default_factory=list)
    iqr_ms_bs256_runs: list = field(default_factory=list)
    drop_pp: float | None = None
    gmacs_per_s: float = 0.0
    peak_share: float | None = None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, d: dict) -> "BenchmarkRow":
        return cls(**known_fields(cls, d, "benchmark row"))


@dataclass
class BenchmarkResult(JobResult):
    """``python -m r8 benchmark``: every runtime's figures, the paired comparisons and the targets."""

    threads: int = 0
    runs: int = 0
    macs_per_image: int = 0
    fp32_top1: float = 0.0
    best_drop_pp: float = 0.0
    peaks_gmacs_start: dict | None = None
    peaks_gmacs_end: dict | None = None
    peaks_drift: bool = False
    figures: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    comparisons: list = field(default_factory=list)  # r8.runtimes.timing.Comparison.as_dict, with its run
    rankings: list = field(default_factory=list)  # r8.runtimes.ranking.Ranking.as_dict, with its run and kind
    profiles: list = field(default_factory=list)  # r8.runtimes.profile.Profile.as_dict, with its batch and role
    rows: list[BenchmarkRow] = field(default_factory=list)
    read_row = BenchmarkRow.from_json
