"""The rows of a quantization report, the one value every layer passes on: an :class:`Int8Row` (a
config of one of r8's backends, measured), a :class:`ReferenceRow` (a model's published int8
``.tflite``, measured here) and an :class:`McuRow` (an int8 ``.tflite`` on TFLite Micro). Each is
frozen and holds its identity as fields; its JSON form (the ``rows`` of ``quantization.json``) is
written by :meth:`Row.to_json` and read by :func:`row_from_json`, here only. :func:`best_row` and
:func:`ranked` are the one choice of "best"."""

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import ClassVar

from r8.core.errors import R8Error

REFERENCE_BACKEND = "tflite-reference"  # the row of a model's published int8 .tflite
MCU_BACKEND = "tflite-micro"  # rows of int8 .tflite files run on TFLM's microcontroller kernels


def int8_label(config_id: str, calibration: str) -> str:
    """How an int8 config calibrated on ``calibration`` (a source: train, ...) is named in tables."""
    return f"{config_id}-{calibration}"


def reference_label(path: str | Path) -> str:
    return f"{Path(path).name} (published int8)"


@dataclass(frozen=True)
class Row:
    """Predictions on the test images, scored and paired against the fp32 baseline's."""

    kind: ClassVar[str]
    backend: str
    top1: float
    drop_pp: float  # fp32 minus this top-1, in percent points (positive: worse than fp32)
    drop_ci95_pp: tuple[float, float]  # paired bootstrap
    mcnemar_p: float  # exact McNemar test of the discordant pair
    discordant: tuple[int, int]  # images only fp32 gets right, only this gets right
    per_class: tuple[float, ...]
    subsets: dict[str, float]  # top-1 on each named subset of the test images (JSON: top1_<name>)
    size_bytes: int
    artifact: str  # the file measured
    env: dict  # where it was measured (r8.core.environment)

    @property
    def config(self) -> str:
        """The row's label in tables."""
        raise NotImplementedError

    def to_json(self) -> dict:
        out = {"kind": self.kind, "backend": self.backend, "config": self.config}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "subsets":
                out.update({f"top1_{name}": top1 for name, top1 in value.items()})
            elif value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Int8Row(Row):
    """One int8 config of one of r8's backends (:mod:`r8.backends`)."""

    kind: ClassVar[str] = "int8"
    config_id: str  # the backend's config id, e.g. qdq-s8s8-perchannel-minmax
    calibration: str  # the calibration set's source: train, or the reference's test indices
    artifact_digest: str  # equal for two builds of one config
    calibration_s: float | None = None  # None where calibration runs inside the quantizer
    quantize_s: float | None = None

    @property
    def config(self) -> str:
        return int8_label(self.config_id, self.calibration)


@dataclass(frozen=True)
class ReferenceRow(Row):
    """A model's published int8 ``.tflite``, on the same test images."""

    kind: ClassVar[str] = "reference"

    @property
    def config(self) -> str:
        return reference_label(self.artifact)


@dataclass(frozen=True)
class McuRow(Row):
    """An int8 ``.tflite`` on TFLite Micro, and what says whether it runs on a microcontroller."""

    kind: ClassVar[str] = "mcu"
    source_backend: str  # whose file: "tflite" (r8's), REFERENCE_BACKEND, or "file" (given by hand)
    source_config: str  # that row's label (or the file's name)
    litert_top1: float  # the same file on LiteRT's default kernels
    vs_litert_ci95_pp: tuple[float, float]  # TFLM minus LiteRT top-1, paired 95 % interval
    measured: dict  # r8.runtimes.mcu.measure: agreement with LiteRT's kernels, arena, flash, ops, TFLM seconds

    @property
    def config(self) -> str:
        return self.source_config

    @property
    def arena_bytes(self) -> int:
        return self.measured["arena"]["needed"]

    @property
    def flash_bytes(self) -> int:
        return self.measured["flash"]["total"]

    def to_json(self) -> dict:
        out = super().to_json()
        del out["measured"]
        return {**out, **self.measured, "file": self.artifact, "arena_bytes": self.arena_bytes,
                "flash_bytes": self.flash_bytes}


KINDS = {cls.kind: cls for cls in (Int8Row, ReferenceRow, McuRow)}
MCU_MEASURED = ("tflm_s", "bitexact_ref_kernels", "differs_ref_kernels", "ref_kernels_first_differ_at",
                "differs_xnnpack", "differs_xnnpack_top1", "arena", "flash", "ops")  # mcu.measure's keys


def row_from_json(d: dict) -> Row:
    """The row a ``quantization.json`` row was written from; R8Error naming what is missing."""
    cls = KINDS.get(d.get("kind"))
    if cls is None:
        raise R8Error(f"a row of kind {d.get('kind')!r} (not one of {', '.join(KINDS)}): written by an older r8? "
                      "Rerun python -m r8 quantize")
    values = {f.name: d[f.name] for f in fields(cls) if f.name in d}
    values["subsets"] = {k.removeprefix("top1_"): v for k, v in d.items() if k.startswith("top1_")}
    if cls is McuRow:
        values["measured"] = {k: d[k] for k in MCU_MEASURED if k in d}
    missing = [f.name for f in fields(cls) if f.name not in values and f.default is MISSING]
    if missing:
        raise R8Error(f"a {cls.kind} row ({d.get('backend')} {d.get('config')}) lacks {', '.join(missing)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def rows_from_json(report: dict) -> list[Row]:
    return [row_from_json(r) for r in report.get("rows", [])]


def ranked(rows: list[Row], kind: type[Row] = Row) -> list[Row]:
    """The rows of ``kind``, best first: the smallest drop from fp32 is the best."""
    return sorted((r for r in rows if isinstance(r, kind)), key=lambda r: r.drop_pp)


def best_row(rows: list[Row], backend: str | None = None, kind: type[Row] = Int8Row) -> Row | None:
    """The one choice of "best": the row of ``kind`` (by default r8's own int8 rows, never a
    published reference or a TFLite Micro row) with the smallest drop, of one backend if given.
    None where there is none."""
    own = [r for r in ranked(rows, kind) if backend in (None, r.backend)]
    return own[0] if own else None
