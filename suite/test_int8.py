"""Proof that every calibration method applies what its name says, and the calibration-seed gate.
The per-config int8 gates themselves (every config's drop, each backend's best, the published
reference) run for any model in :mod:`r8.gates` (``suite/test_gates.py``)."""

import numpy as np
import pytest
from file_facts import activation_scales

from r8.backends import backend, gated, ort, pytorch
from r8.backends.ort import OrtConfig
from r8.backends.torch_flows import TorchConfig
from r8.core.cache import build_facts
from r8.gates import check_best_drop
from r8.jobs.study import STUDY_SEEDS, seed_runs
from r8.thresholds import DEFAULT


# ---- every method applies what its name says: its ranges are not MinMax's
def _ort_ranges(method, model, cal):
    path = ort.build(model, OrtConfig("qdq", "u8s8", True, method), cal)
    return activation_scales(path), build_facts(path)["ranges"]


@pytest.mark.parametrize("method", ["entropy", "percentile", "distribution"])
def test_ort_method_is_not_minmax(method, ic01, calibration, report):
    """quantize_static's Entropy with its default bins is MinMax to the last bit: r8 passes its own."""
    (scales, ranges), (minmax_scales, minmax_ranges) = (_ort_ranges(m, ic01, calibration) for m in (method, "minmax"))
    common = scales.keys() & minmax_scales.keys()  # Distribution's symmetric ranges keep ReLUs: more tensors
    assert len(common) >= len(minmax_scales) - 2
    differ = [t for t in common if not np.isclose(scales[t], minmax_scales[t], rtol=1e-6, atol=0)]
    report(f"ort {method}: activation scales that differ from minmax", f"{len(differ)} of {len(common)}")
    assert differ, f"{method} quantized every activation exactly as minmax"
    if method in ("entropy", "percentile"):  # a threshold search within the observed range
        for tensor, (lo, hi) in ranges.items():
            mlo, mhi = minmax_ranges[tensor]
            wide = max(abs(mlo), abs(mhi))
            assert max(abs(lo), abs(hi)) <= wide * (1 + 2 / 2048), f"{method} wider than minmax at {tensor}"


TORCH_OBSERVER_FLOWS = [("fx", "x86"), ("pt2e", "x86")]


@pytest.mark.parametrize("observer", ["movingavg", "histogram"])
@pytest.mark.parametrize("flow, engine", TORCH_OBSERVER_FLOWS, ids=[f for f, _ in TORCH_OBSERVER_FLOWS])
def test_torch_observer_is_not_minmax(flow, engine, observer, ic01, calibration, report):
    def ranges(obs):
        return build_facts(pytorch.build(ic01, TorchConfig(flow, engine, True, obs), calibration))["ranges"]
    got, minmax = ranges(observer), ranges("minmax")
    assert got.keys() == minmax.keys() and got
    differ = [k for k in got if not np.allclose(got[k], minmax[k], rtol=1e-6, atol=0)]
    report(f"torch {flow} {observer}: activation ranges that differ from minmax", f"{len(differ)} of {len(got)}")
    assert differ
    for k, (lo, hi) in got.items():  # both stay inside the observed min..max
        assert hi - lo <= (minmax[k][1] - minmax[k][0]) * (1 + 1e-5), f"{observer} wider than minmax at {k}"


# ---- the calibration-seed gate: CI keeps seed 0, this runs all five
@pytest.mark.slow
@pytest.mark.parametrize("name", [b.name for b in gated()])
def test_best_config_mean_drop_over_seeds(name, ic01, cifar10, int8_rows, torch_probs, report):
    best = min(backend(name).configs(available=True), key=lambda c: int8_rows(name, c).drop_pp)
    drops = [r.drop_pp for r in seed_runs(ic01, cifar10, name, best, torch_probs, 1000, STUDY_SEEDS)]
    report(f"best {name} {best.id}, n=1000, seeds 0-4: drops (pp)",
           f"{drops}, mean {np.mean(drops):.3f}, std {np.std(drops, ddof=1):.3f}")
    check_best_drop(ic01, name, f"{best.id}, mean of seeds 0-4", float(np.mean(drops)), DEFAULT.best_drop_pp)
