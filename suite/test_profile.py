"""Per-op profiles (r8.runtimes.profile): a .tflite cut into one-op models that compute exactly what
the op computes inside the whole file, ONNX Runtime's per-node times, and the report's table of
r8's fastest int8 next to the published file. No figure here is asserted on: profiles are timings."""

import numpy as np
import pytest

from r8.runtimes import profile
from r8.runtimes.mcu import ops


@pytest.fixture(scope="module")
def published_int8(ic01):
    return ic01.reference("int8")


def test_each_cut_op_computes_what_it_computes_in_the_whole_file(published_int8, test_split):
    """Every op of IC01's published int8 file, alone, on the tensors it reads in the whole model
    (every tensor kept), gives the tensor it writes there, bit for bit (LiteRT's reference kernels)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from r8.runtimes.runners import integer_input

    whole = Interpreter(model_path=str(published_int8), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                        experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    detail = whole.get_input_details()[0]
    whole.set_tensor(detail["index"], integer_input(test_split.images[:1], detail["dtype"], *detail["quantization"]))
    whole.invoke()
    cut = profile.single_op_models(published_int8)
    assert [op for op, _ in cut] == [d["op_name"] for d in whole._get_ops_details()]
    assert list(dict.fromkeys(op for op, _ in cut)) == ops(published_int8)
    for (op, content), details in zip(cut, whole._get_ops_details()):
        one = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        one.allocate_tensors()
        for d in one.get_input_details():  # the cut keeps the file's tensor indices
            one.set_tensor(d["index"], whole.get_tensor(d["index"]))
        one.invoke()
        out = one.get_output_details()[0]["index"]
        assert out == details["outputs"][0]
        np.testing.assert_array_equal(one.get_tensor(out), whole.get_tensor(out), err_msg=op)


@pytest.mark.parametrize("batch", [1, 8])
def test_a_tflite_profile_times_every_op_and_the_runner(published_int8, test_split, batch):
    p = profile.tflite_profile(published_int8, test_split.images[:batch], threads=1)
    assert [t.op for t in p.ops] == [op for op, _ in profile.single_op_models(published_int8)]
    assert all(t.us > 0 and t.output_shape[0] == batch for t in p.ops) and p.bare_us > 0 and p.runner_us > 0
    kinds = profile.by_kind(p)
    assert kinds["conv"][0] == 9 and kinds["add"][0] == 3 and kinds["dense"][0] == 1  # IC01's layers
    assert profile.Profile.from_dict(p.as_dict()) == p


def _int8_onnx(model, calibration, fmt: str):
    from r8.backends import backend

    ort = backend("ort")
    return ort.build(model, next(c for c in ort.default if c.fmt == fmt), calibration)


def test_an_onnx_profile_names_each_node_from_onnx_runtimes_profiler(ic01, calibration, test_split):
    p = profile.onnx_profile(_int8_onnx(ic01, calibration, "qop"), test_split.images[:4], threads=1)
    kinds = profile.by_kind(p)
    assert p.engine == "onnxruntime" and kinds["conv"][0] == 9 and kinds["add"][0] == 3
    assert all(t.us >= 0 for t in p.ops) and p.bare_us > 0
    assert profile.profiler("onnxruntime-int8-qop-u8in") is profile.onnx_profile
    assert profile.profiler("tflite-reference-int8") is profile.tflite_profile
    assert profile.profiler("openvino-int8-qdq") is profile.openvino_profile
    assert profile.profiler("litert-int8") is profile.tflite_profile
    assert profile.profiler("executorch-int8") is profile.executorch_profile and profile.profiler("torch-int8") is None


def test_an_openvino_profile_reads_its_performance_counters(ic01, calibration, test_split):
    """OpenVINO fuses the QDQ file's ops: its executed nodes hold IC01's 9 convolutions as nodes of their own."""
    p = profile.openvino_profile(_int8_onnx(ic01, calibration, "qdq"), test_split.images[:4], threads=1)
    assert p.engine == "openvino" and profile.by_kind(p)["conv"][0] == 9 and p.bare_us > 0


def test_the_runner_overhead_is_the_runners_extra_cost():
    """A runner that sleeps 300 µs more than the bare call it wraps shows at least most of that as
    overhead, and the bare call's figure is the bare call's (the two slots are not swapped)."""
    import time

    bare_us, runner_us = profile.interleaved_us(lambda: None, lambda: time.sleep(300e-6))
    assert bare_us < 50 and runner_us - bare_us > 250
