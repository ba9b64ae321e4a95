"""The NNCF backend (``nncf``): its QDQ file runs every conv in int8 on ONNX Runtime, its weights
are 7-bit where the CPU's int8 kernels saturate (NNCF's overflow fix, as ORT's configs get), and
a config NNCF cannot apply to a model is refused by name."""

import numpy as np
import onnx
import pytest
from file_facts import op_counts

from r8 import artifacts
from r8.backends import backend
from r8.backends.nncf import NncfConfig
from r8.backends.ort import initializers, int8_convs, reduce_range
from r8.core.errors import R8Error
from r8.thresholds import DEFAULT


@pytest.mark.accuracy
def test_every_conv_is_int8(ic01, calibration):
    path = backend("nncf").build(ic01, NncfConfig(), calibration)
    assert int8_convs(path) == op_counts(artifacts.onnx_fp32(ic01, "torch"))["Conv"] > 0


@pytest.mark.accuracy
def test_weights_fit_the_cpus_int8_kernels(ic01, calibration):
    """Where u8 x s8 pairs saturate 16-bit sums (x86 without VNNI) every weight is in [-64, 63];
    elsewhere the full int8 grid is used."""
    graph = onnx.load(str(backend("nncf").build(ic01, NncfConfig(), calibration))).graph
    weights = [w for w in initializers(graph).values() if w.dtype == np.int8 and w.ndim == 4]
    widest = max(int(np.abs(w.astype(np.int16)).max()) for w in weights)
    assert weights and (widest <= 64 if reduce_range() else widest > 64), widest


@pytest.mark.accuracy
@pytest.mark.xfail(not reduce_range(), strict=True, reason=(
    "measured on x86 with VNNI (full 8-bit weights): NNCF's default loses 0.55 pp [0.17, 0.93] on IC01 (calibration seeds "
    "1-3: 0.46, 0.58, 0.51; its MIXED preset 0.40; without bias correction 0.36), its per-tensor config 0.10; on x86 "
    "without VNNI (7-bit weights) it lost 0.17, and 0.22 with 7-bit weights on the VNNI CPU. ONNX Runtime's int8 kernels "
    "give the QDQ file's own arithmetic (run with no graph optimization: the same 86.64 %), so the loss is NNCF's "
    "quantization of IC01, not the runtime's"))
def test_nncf_default_within_the_best_drop_target_on_ic01(int8_rows, report):
    """IC01's gate for NNCF: its default config (per-channel, fast bias correction) within
    0.2 pp of fp32 on the 10k test images (the row the gates measure). Without VNNI, a drop above
    0.2 pp whose interval still reaches 0.2 is shown as an expected failure naming it; one
    significantly above 0.2 pp fails."""
    row = int8_rows("nncf", NncfConfig())
    report("IC01: nncf default (perchannel-fastbc)", f"drop {row.drop_pp:.2f} pp {list(row.drop_ci95_pp)}")
    if reduce_range() and row.drop_pp > DEFAULT.best_drop_pp:
        assert row.drop_ci95_pp[0] <= DEFAULT.best_drop_pp, f"significantly above the target: {row.drop_ci95_pp}"
        pytest.xfail(f"NNCF's default loses {row.drop_pp:.2f} pp {list(row.drop_ci95_pp)} on IC01 on this CPU without "
                     f"VNNI, above the {DEFAULT.best_drop_pp} pp target (its interval reaches it)")
    assert row.drop_pp <= DEFAULT.best_drop_pp


@pytest.mark.slow
def test_full_bias_correction_is_refused_by_name_where_nncf_fails(ic01, calibration):
    """NNCF's full bias correction fails on IC01's residual graph (it looks for a node output the
    exported graph does not have): shown as not measured, with NNCF's reason, never a traceback."""
    with pytest.raises(R8Error, match="NNCF could not quantize it with perchannel-fullbc"):
        backend("nncf").build(ic01, NncfConfig(True, "full"), calibration)
