"""NNCF's post-training quantization (``nncf.quantize``, OpenVINO's toolkit) on the fp32 ONNX file:
ONNX in, QDQ ONNX out, run by ONNX Runtime like r8's ORT configs, calibrated on the same set.
NNCF's default corrects each layer's bias after quantization (fast bias correction); the full
matrix also has its full bias correction. The field's quantizer beside r8's own: each config is held
to the per-config drop gate, not to the best-drop gate of r8's routes."""

import contextlib
import hashlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r8 import artifacts
from r8.backends import Backend, missing, weights_id
from r8.backends.ort import ImageReader, reduce_range
from r8.calibration import CalibrationSet
from r8.core.cache import build_once
from r8.core.errors import R8Error
from r8.data import Split
from r8.model import Model
from r8.runtimes.runners import OnnxRunner, onnx_session


@dataclass(frozen=True)
class NncfConfig:
    per_channel: bool = True  # NNCF's default
    bias_correction: str = "fast"  # NNCF's default; "full": its BiasCorrection (slower, statistics per layer)

    @property
    def id(self) -> str:
        return f"{weights_id(self.per_channel)}-{self.bias_correction}bc"


DEFAULT_MATRIX = [NncfConfig(), NncfConfig(False)]
FULL_MATRIX = DEFAULT_MATRIX + [NncfConfig(True, "full"), NncfConfig(False, "full")]


def quantize(src: Path, out: Path, config: NncfConfig, calibration: CalibrationSet) -> dict:
    """Every image of the calibration set, one per NNCF sample. On x86 without VNNI the weights
    get 7 bits everywhere (NNCF's overflow fix), for the reason ORT's configs do (``reduce_range``)."""
    import nncf
    import onnx

    reader = ImageReader(calibration.images, src, batch=1)
    samples = list(iter(reader.get_next, None))
    advanced = _advanced(config)
    start = time.perf_counter()
    try:  # NNCF draws its progress bars on stdout, which holds r8's own lines only
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(onnx.load(str(src)), nncf.Dataset(samples), subset_size=len(samples),
                                      fast_bias_correction=config.bias_correction == "fast", advanced_parameters=advanced)
    except RuntimeError as e:  # e.g. its full bias correction on a residual graph: a missing node output
        raise R8Error(f"{src.name}: NNCF could not quantize it with {config.id}: {e}") from None
    onnx.save(quantized, str(out))
    return {"quantize_s": time.perf_counter() - start}  # NNCF calibrates inside nncf.quantize


def _quiet_nncf() -> None:
    """NNCF sets its logger to INFO when imported (per-step lines, progress bars): follow r8's console instead."""
    logging.getLogger("nncf").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))


def _advanced(config: NncfConfig):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix, QuantizationParameters

    _quiet_nncf()
    return AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE if reduce_range() else OverflowFix.FIRST_LAYER,
        weights_quantization_params=QuantizationParameters(per_channel=config.per_channel))


def accuracy_controlled(model: Model, config: NncfConfig, cal: CalibrationSet, val: Split, max_drop_pp: float) -> Path:
    """``nncf.quantize_with_accuracy_control``: NNCF's quantization of ``config``, then layers
    reverted to float, the most sensitive first (NNCF's ranking), until the top-1 drop on ``val``
    is within ``max_drop_pp`` (NNCF's rule: the point drop)."""
    import nncf
    import onnx

    src = artifacts.onnx_fp32(model, "torch")

    def make(tmp: Path) -> dict:
        reader = ImageReader(cal.images, src, batch=1)
        calibration = list(iter(reader.get_next, None))
        name = reader.name
        inputs = ImageReader(val.images, src, batch=1).batches
        items = list(zip(inputs, val.labels))

        def validate(candidate, data) -> tuple[float, None]:
            data = list(data)
            session = onnx_session(candidate.SerializeToString())
            logits = session.run(None, {name: np.concatenate([x for x, _ in data])})[0]
            return float(np.mean(logits.argmax(1) == np.array([y for _, y in data]))), None

        start = time.perf_counter()
        try:
            quantized = nncf.quantize_with_accuracy_control(
                onnx.load(str(src)), nncf.Dataset(calibration), nncf.Dataset(items, lambda item: {name: item[0]}), validate,
                max_drop=max_drop_pp / 100, subset_size=len(calibration), fast_bias_correction=config.bias_correction == "fast",
                advanced_quantization_parameters=_advanced(config))
        except RuntimeError as e:
            raise R8Error(f"{src.name}: NNCF's accuracy control could not quantize it with {config.id}: {e}") from None
        onnx.save(quantized, str(tmp))
        return {"quantize_s": time.perf_counter() - start}

    digest = hashlib.sha256(np.ascontiguousarray(val.images).data).hexdigest()[:12]
    return build_once(artifacts.name(model, f"nncf/accuracy-control-{config.id}-{cal.tag}-max{max_drop_pp}pp-val{digest}.onnx"),
                      artifacts.key(model, calibration=cal.sha256, overflow_fix=reduce_range(), validation=digest,
                                    max_drop_pp=max_drop_pp), make)


def build(model: Model, config: NncfConfig, cal: CalibrationSet) -> Path:
    src = artifacts.onnx_fp32(model, "torch")
    return build_once(artifacts.name(model, f"nncf/{config.id}-{cal.tag}.onnx"),
                      artifacts.key(model, calibration=cal.sha256, overflow_fix=reduce_range()),
                      lambda tmp: quantize(src, tmp, config, cal))


class NncfBackend(Backend):
    name, default, full = "nncf", DEFAULT_MATRIX, FULL_MATRIX
    reproducibility = ("NNCF quantizes the fp32 ONNX file (ONNX in, QDQ out); ONNX Runtime runs it on its int8 "
                       "kernels, which pick their code path by CPU. On x86 without VNNI every weight gets 7 bits "
                       "(NNCF's overflow fix), as ORT's configs do.")

    def build(self, model, config, cal):
        return build(model, config, cal)

    def runner(self, config, path, threads=0):
        return OnnxRunner(path, name=f"nncf-{config.id}", threads=threads)

    def unavailable(self, config):
        return missing("nncf", "nncf")


BACKENDS = [NncfBackend()]
