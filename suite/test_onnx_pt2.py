"""The ``.onnx`` and ``.pt2`` front-ends: IC01 as torch.onnx's file (NCHW, with the ``allowzero``
Reshape torch.onnx writes), as tf2onnx's file (NHWC, transposed first) and as r8's exported
program, each converted and held to parity against the file's own runtime (ONNX Runtime, the
program itself), on seeded inputs and on the 10k test images; and what each front-end refuses,
by name, before anything is written."""

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from r8 import artifacts
from r8.core.errors import R8Error
from r8.frontends.convert import convert, input_layout
from r8.metrics import agreement, predict, top1
from r8.model import load_model
from r8.runtimes.runners import TorchRunner, reference_runner

PROB_ATOL = 1e-5  # the conversion gate of every front-end
ORIGINS = ["torch-onnx", "tf2onnx", "pt2"]


@pytest.fixture(scope="session")
def origin_files(ic01, tmp_path_factory):
    """origin -> IC01 in that file, copied under a name of its own (a model's reports take its stem)."""
    folder = tmp_path_factory.mktemp("origins")
    sources = {"torch-onnx": (artifacts.onnx_fp32(ic01, "torch"), "ic01_torch.onnx"),
               "tf2onnx": (artifacts.onnx_fp32(ic01, "keras"), "ic01_tf2onnx.onnx"),
               "pt2": (artifacts.exported_program(ic01), "ic01.pt2")}
    return {origin: shutil.copy(src, folder / name) for origin, (src, name) in sources.items()}


def test_premise_torch_onnx_writes_reshape_allowzero(origin_files):
    """onnx2torch refuses allowzero=1, which torch.onnx writes: r8 clears it where it cannot matter."""
    proto = onnx.load(str(origin_files["torch-onnx"]))
    assert any(a.name == "allowzero" and a.i == 1 for n in proto.graph.node if n.op_type == "Reshape"
               for a in n.attribute)


@pytest.mark.parametrize("origin,layout", [("torch-onnx", "NCHW"), ("tf2onnx", "NHWC"), ("pt2", "NCHW")])
def test_layout_is_read_from_the_file(origin_files, origin, layout):
    model = convert(origin_files[origin])
    assert input_layout(origin_files[origin]) == model.meta["layout"] == layout
    assert model.meta["input_shapes"] == [(3, 32, 32)]  # r8's contract: NCHW whatever the file's layout


@pytest.mark.parametrize("origin", ORIGINS)
def test_parity_on_seeded_inputs(origin_files, origin, rng, report):
    images = rng.uniform(0, 255, (64, 32, 32, 3)).astype(np.float32)
    ours = predict(TorchRunner(convert(origin_files[origin])), images, progress=False)
    theirs = predict(reference_runner(origin_files[origin]), images, progress=False)
    diff = float(np.abs(ours - theirs).max())
    report(f"parity {origin} vs its own runtime, seeded inputs: max|dp|", f"{diff:.2e}")
    assert diff <= PROB_ATOL


@pytest.fixture(scope="session")
def origin_probs(origin_files, test_split):
    """origin -> (converted, the file's own runtime) predictions on the 10k test images."""
    return {origin: (predict(TorchRunner(convert(path)), test_split.images, progress=False),
                     predict(reference_runner(path), test_split.images, progress=False))
            for origin, path in origin_files.items()}


@pytest.mark.accuracy
@pytest.mark.parametrize("origin", ORIGINS)
def test_parity_10k(origin_probs, origin, report):
    ours, theirs = origin_probs[origin]
    diff = float(np.abs(ours - theirs).max())
    report(f"parity {origin} vs its own runtime (10k): max|dp|, argmax agreement",
           f"{diff:.2e}, {agreement(ours, theirs):.4%}")
    assert diff <= PROB_ATOL and agreement(ours, theirs) == 1.0


@pytest.mark.accuracy
def test_every_origin_gives_the_h5s_top1(origin_probs, torch_probs, test_split, report):
    labels = test_split.labels
    tops = {origin: top1(ours, labels) for origin, (ours, _) in origin_probs.items()}
    report("fp32 top-1 of IC01 by origin (10k)",
           ", ".join(f"{o} {t:.2%}" for o, t in {"h5": top1(torch_probs, labels), **tops}.items()))
    assert set(tops.values()) == {top1(torch_probs, labels)}


def test_program_is_checked_against_itself_not_its_onnx(origin_files):
    """A .pt2's reference is the program (torch), not the ONNX file r8 converts it through."""
    runner = reference_runner(origin_files["pt2"])
    assert isinstance(runner, TorchRunner) and isinstance(runner.module, torch.fx.GraphModule)


# ---- what is refused, by name


def _onnx_file(path, nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _conv_graph(path, input_dims, op="Relu", extra_nodes=(), dtype=TensorProto.FLOAT):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.ones(108, np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c"], ["y"], name="act"), *extra_nodes]
    return _onnx_file(path, nodes, [helper.make_tensor_value_info("x", dtype, input_dims)],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])], [weight])


@pytest.mark.parametrize("case,expected", [
    ("unsupported op", "node 'act' (Hardmax): onnx2torch has no converter for Hardmax at opset 18"),
    ("fixed batch", "with no dynamic batch dimension"),
    ("dynamic height", "a dynamic dimension other than the batch"),
    ("integer input", "is INT32; r8 converts float32 inputs"),
])
def test_onnx_refusals_name_the_file_and_the_node(case, expected, tmp_path):
    path = tmp_path / "m.onnx"
    if case == "unsupported op":
        _conv_graph(path, ["batch", 3, 8, 8], op="Hardmax")
    elif case == "fixed batch":
        _conv_graph(path, [1, 3, 8, 8])
    elif case == "dynamic height":
        _conv_graph(path, ["batch", 3, "h", 8])
    else:
        _conv_graph(path, ["batch", 3, 8, 8], dtype=TensorProto.INT32)
    with pytest.raises(R8Error) as e:
        convert(path)
    assert str(path) in str(e.value) and expected in str(e.value)


def test_onnx_reshape_allowzero_with_a_zero_is_refused(tmp_path):
    shape = helper.make_tensor("s", TensorProto.INT64, [2], np.array([0, -1]))
    reshape = helper.make_node("Reshape", ["y", "s"], ["z"], name="flat", allowzero=1)
    path = _conv_graph(tmp_path / "m.onnx", ["batch", 3, 8, 8], extra_nodes=[reshape])
    proto = onnx.load(str(path))
    proto.graph.initializer.append(shape)
    proto.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 256]))
    onnx.save(proto, str(path))
    with pytest.raises(R8Error, match="node 'flat' \\(Reshape\\): Reshape with allowzero=1"):
        convert(path)


def test_onnx_damaged_file_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07 not a protobuf")
    with pytest.raises(R8Error, match=f"{path}: not a valid ONNX model"):
        convert(path)


def test_nothing_is_written_before_a_refusal(tmp_path, monkeypatch):
    monkeypatch.setenv("R8_CACHE_DIR", str(tmp_path / "cache"))
    path = _conv_graph(tmp_path / "m.onnx", ["batch", 3, 8, 8], op="Hardmax")
    done = subprocess.run([sys.executable, "-m", "r8", "quantize", "--model", str(path), "--data", "cifar10",
                           "--out", str(tmp_path / "reports")], capture_output=True, text=True)
    assert done.returncode != 0 and "Hardmax" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "reports").exists() and not (tmp_path / "cache").exists()


class _TwoOut(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3)), x.amax((2, 3))


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


@pytest.mark.parametrize("case,expected", [
    ("fixed batch", "with a fixed batch; export it with dynamic_shapes"),
    ("dynamic height", "has dynamic dimension(s) [2] besides the batch"),
    ("two outputs", "returns 2 outputs"),
    ("not a zip", "not a torch.export archive"),
    ("damaged member", "fails its CRC check"),
])
def test_pt2_refusals_name_the_file(case, expected, tmp_path):
    path, x = tmp_path / "m.pt2", torch.zeros(2, 3, 8, 8)
    batch = torch.export.Dim("batch")
    if case == "fixed batch":
        torch.export.save(torch.export.export(_Tiny(), (x,)), path)
    elif case == "dynamic height":
        height = torch.export.Dim("height", min=4)
        torch.export.save(torch.export.export(_Tiny(), (x,), dynamic_shapes=({0: batch, 2: height},)), path)
    elif case == "two outputs":
        torch.export.save(torch.export.export(_TwoOut(), (x,), dynamic_shapes=({0: batch},)), path)
    elif case == "not a zip":
        path.write_bytes(b"PK but not really")
    else:
        torch.export.save(torch.export.export(_Tiny(), (x,), dynamic_shapes=({0: batch},)), path)
        raw = bytearray(path.read_bytes())
        at = raw.index(b"models/")  # inside the first stored member's bytes: its CRC no longer holds
        raw[at + 200] ^= 0xFF
        path.write_bytes(bytes(raw))
    with pytest.raises(R8Error) as e:
        load_model(path)
    assert str(path) in str(e.value) and expected in str(e.value), str(e.value)


def test_channels_first_data_is_refused_with_the_reason(origin_files, tmp_path):
    from r8.data import load_dataset

    rng = np.random.default_rng(0)
    arrays = {f"x_{s}": rng.integers(0, 255, (20, 3, 32, 32), dtype=np.uint8) for s in ("train", "test")}
    np.savez(tmp_path / "nchw.npz", **arrays, **{f"y_{s}": np.arange(20) % 10 for s in ("train", "test")})
    with pytest.raises(R8Error, match="they are channels-first \\(NCHW\\); r8's data sets hold images channels-last"):
        load_dataset(tmp_path / "nchw.npz").check(load_model(origin_files["torch-onnx"]))


def test_cli_inspect_shows_the_layout(origin_files):
    done = subprocess.run([sys.executable, "-m", "r8", "inspect", "--model", str(origin_files["tf2onnx"])],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "input layout: NHWC" in done.stdout and "every layer is supported" in done.stdout


# ---- one model, three origins, the same int8 rows


@pytest.fixture(scope="session")
def origin_models(origin_files):
    return {origin: load_model(path) for origin, path in origin_files.items() if origin != "tf2onnx"}


def first_config(backend: str, flow: str | None = None):
    """The backend's first default config this machine runs (of ``flow`` where given)."""
    from r8 import backends

    b = backends.backend(backend)
    configs = [c for c in b.configs(available=True) if flow is None or c.flow == flow]
    if not configs:
        pytest.fail(f"{backend}: no {flow or ''} config runs here ({b.unavailable(b.default[0])})")
    return configs[0]


# ORT and NNCF quantize the ONNX file, which is the same for the three origins (r8 exports each
# model with torch.onnx): identical predictions. PyTorch's int8 is PT2E's, which works on the aten
# graph torch.export gives of each origin's module.
@pytest.mark.accuracy
@pytest.mark.nightly  # the gate's check that covers it: the origins' fp32 predictions are the .h5's (above)
@pytest.mark.parametrize("backend,flow", [("ort", None), ("nncf", None), ("torch", "pt2e")])
def test_every_origin_gives_the_h5s_int8_rows(backend, flow, ic01, origin_models, cifar10, calibration, torch_probs,
                                             report):
    """IC01 as .h5, .onnx and .pt2: the backend's first default config here gives the same top-1
    within the paired interval of the two origins' predictions."""
    from r8.jobs.quantize import evaluate_config
    from r8.metrics import paired_drop

    config, labels = first_config(backend, flow), cifar10.test.labels
    h5_row, h5_probs = evaluate_config(ic01, cifar10, backend, config, torch_probs, calibration)
    for origin, model in origin_models.items():
        row, probs = evaluate_config(model, cifar10, backend, config, torch_probs, calibration)
        lo, hi = paired_drop(h5_probs, probs, labels)["drop_ci95_pp"]
        report(f"IC01 {backend}-{config.id}: top-1 .h5 vs {origin}",
               f"{h5_row.top1:.2%} vs {row.top1:.2%} (difference 95 % CI [{lo:.2f}, {hi:.2f}] pp, "
               f"agreement {agreement(h5_probs, probs):.2%})")
        assert lo <= 0 <= hi
