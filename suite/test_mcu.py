"""Will it run on a microcontroller? int8 .tflite files on TFLite Micro (TFLM): the arena
found by bisection is the smallest that works and agrees with TFLM's own allocator; flash is the
file, split into weights and graph; bad input is refused naming the file (and the op); TFLM's
C++ prints stay off the console; and the IC01 gates against LiteRT and the MLCommons reference."""

import json
import math

import numpy as np
import pytest
import trained_models
from cli_run import r8
from file_facts import tflite_model_path

from r8 import backends
from r8.backends import backend
from r8.core.batch import rows
from r8.core.errors import R8Error
from r8.metrics import paired_drop, top1
from r8.rows import best_row
from r8.runtimes import mcu
from r8.thresholds import MCU_MARGIN, Gate

pytest.importorskip("tflite_micro", reason="TFLite Micro's Python interpreter (tflite-micro) is not installed")


@pytest.fixture(scope="module")
def reference():
    return tflite_model_path(quantized=True)


def test_arena_is_the_smallest_that_runs_and_matches_tflms_allocator(reference):
    arena = mcu.arena_bytes(reference)
    assert mcu._runs(reference, arena["needed"]) and not mcu._runs(reference, arena["needed"] - 1)
    assert arena["recorded"]["total"] == arena["needed"] == arena["recorded"]["head"] + arena["recorded"]["tail"]
    # TFLM's planner reaches the bound of a layer-by-layer runtime: its head holds exactly the most
    # activations live at once (three 32x32x16 int8 maps in the first residual block: 49,152 bytes)
    assert arena["recorded"]["head"] == mcu.peak_activation_bytes(reference) == 3 * 32 * 32 * 16


def test_where_tflm_and_litert_reference_kernels_part(reference, cifar10):
    """The per-op comparison behind the bit-exactness verdict, on the first 200 test images: each
    image whose outputs differ parts first at FULLY_CONNECTED, by one LSB; so do a few whose
    outputs agree (the int8 softmax can absorb one LSB of its input), and no other op parts them."""
    images = cifar10.test.images[:200]
    tflm, _ = mcu.outputs(reference, images, "tflm")
    ref, _ = mcu.outputs(reference, images, "litert-reference-kernels")
    parted = (tflm != ref).any(axis=1)
    assert mcu.first_differing_ops(reference, images[parted]) == {"FULLY_CONNECTED": {"images": int(parted.sum()),
                                                                                    "max_lsb": 1}}
    everywhere = mcu.first_differing_ops(reference, images)
    assert set(everywhere) == {"FULLY_CONNECTED"} and everywhere["FULLY_CONNECTED"]["images"] >= parted.sum() > 0


def test_flash_is_the_file_split_into_weights_and_graph(reference):
    flash = mcu.flash_bytes(reference)
    assert flash["total"] == reference.stat().st_size == flash["weights"] + flash["graph"]
    assert 0 < flash["graph"] < flash["weights"]  # a CNN's flash is mostly its weights
    assert mcu.ops(reference) == ["CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]


def test_tflm_runner_predicts_like_the_cached_parallel_run(reference, cifar10):
    images = cifar10.test.images[:8]
    probs = mcu.TflmRunner(reference).predict(images)
    raw, _ = mcu.outputs(reference, images, "tflm")
    np.testing.assert_array_equal(probs, mcu.dequantize(reference, raw))
    assert probs.shape == (8, 10) and np.allclose(probs.sum(1), 1, atol=0.05)


def _with_opcode(src, dst, builtin: int) -> None:
    """A copy of ``src`` whose first op code says ``builtin`` (both of the schema's code fields)."""
    import tflite

    buf = bytearray(src.read_bytes())
    code = tflite.Model.GetRootAsModel(buf, 0).OperatorCodes(0)
    for field, width in ((4, 1), (10, 4)):  # deprecated_builtin_code (int8), builtin_code (int32)
        at = code._tab.Offset(field)
        assert at, "the op code stores both fields"
        buf[code._tab.Pos + at:code._tab.Pos + at + width] = builtin.to_bytes(width, "little", signed=True)
    dst.write_bytes(bytes(buf))


def test_bad_input_is_refused_naming_the_file_and_the_op(reference, tmp_path):
    float_model, garbage, unknown_op = (tflite_model_path(quantized=False), tmp_path / "notes.tflite",
                                        tmp_path / "lsh.tflite")
    garbage.write_bytes(b"not a flatbuffer at all")
    _with_opcode(reference, unknown_op, 15)  # LSH_PROJECTION: a TFLite builtin TFLM does not have
    for path, reason in ((float_model, "not int8"), (garbage, "not a TFLite flatbuffer"),
                         (unknown_op, "op LSH_PROJECTION is not a TFLM builtin")):
        with pytest.raises(R8Error, match=reason) as e:
            mcu.interpreter(path)
        assert str(path) in str(e.value)
    done = r8("mcu", "--tflite", unknown_op, check=False)  # the command says the same, exit 2
    assert done.returncode == 2 and f"{unknown_op}: op LSH_PROJECTION" in done.stderr and "Traceback" not in done.stderr
    # TFLM's own C++ lines stay off the console, and -v shows them
    assert "Didn't find op for builtin opcode" not in done.stderr
    assert "Didn't find op for builtin opcode" in r8("-v", "mcu", "--tflite", unknown_op, check=False).stderr


def test_mcu_command_json_and_a_quiet_console(tmp_path):
    """``mcu --json`` on the suite's digits model: a row per int8 .tflite, TFLM's prints nowhere."""
    model, data = trained_models.cached("digits")
    done = r8("mcu", "--model", model, "--data", data, "--json")
    rows = json.loads(done.stdout)["rows"]  # stdout is the JSON alone: no C++ print got into it
    configs = [f"{c.id}-train" for b in backends.mcu() for c in b.default]  # each backend's that writes .tflite
    assert [r["config"] for r in rows] == configs and {"file", "config", "top1", "litert_top1", "bitexact_ref_kernels", "differs_xnnpack",
                               "arena_bytes", "flash_bytes", "ops"} <= set(rows[0])
    assert "RecordingMicroAllocator" not in done.stderr and "resource variables" not in done.stderr
    for row in rows:
        assert row["arena_bytes"] > 0 and row["flash_bytes"] > 0 and "CONV_2D" in row["ops"]


# TFLM runs one image at a time (IC01: about 60 images/s on this 2-core machine): the gate runs the
# first 1,000 test images, and nightly all of them, with the same checks
GATE_IMAGES = 1000


@pytest.mark.accuracy
@pytest.mark.parametrize("images", [pytest.param(GATE_IMAGES, id=f"first{GATE_IMAGES}"),
                                    pytest.param(None, id="all", marks=pytest.mark.nightly)])
def test_best_tflite_config_on_tflm(images, r8_model, r8_int8_rows, r8_data, report):
    """The microcontroller gates on r8's best TFLite int8 config of the model under test, over its test
    images (the first ``images``): TFLM's top-1 equals LiteRT's within the paired 95 % interval; its outputs are LiteRT's
    reference kernels' bit for bit except where FULLY_CONNECTED's requantization rounds
    differently, by one LSB (TFLM rounds twice, as gemmlowp's doubling high multiply then a
    rounding shift; LiteRT's reference kernel once): every op before it is bit-identical on every
    image, and no other op parts them. Where the model has a published int8 file (IC01, IC02), its
    arena and flash are within 5 % of that file's; another model's are only reported (no other
    model's file is a yardstick for it)."""
    best = best_row([r8_int8_rows("tflite", c) for c in backend("tflite").default], "tflite")
    part = slice(images)
    m = mcu.measure(best.artifact, rows(r8_data.test.images, part))
    labels = r8_data.test.labels[part]
    vs_litert = paired_drop(m["litert_probs"], m["probs"], labels)
    published = r8_model.reference("int8")
    report(f"{r8_model.stem} {best.config} on TFLM ({len(labels):,} test images)",
           f"top-1 {top1(m['probs'], labels):.2%} (LiteRT {top1(m['litert_probs'], labels):.2%}), "
           f"{m['differs_ref_kernels']} outputs differ from LiteRT's reference kernels (first at "
           f"{m['ref_kernels_first_differ_at']}), {m['differs_xnnpack']} from XNNPACK "
           f"({m['differs_xnnpack_top1']} top-1), arena {m['arena']['needed']:,} B, flash {m['flash']['total']:,} B "
           + (f"(published int8: {mcu.arena_bytes(published)['needed']:,} B, {mcu.flash_bytes(published)['total']:,} B), "
              if published else "(no published int8 file to compare with), ") + f"TFLM {m['tflm_s']:.0f} s")
    lo, hi = vs_litert["drop_ci95_pp"]
    assert lo <= 0 <= hi
    if not m["bitexact_ref_kernels"]:
        assert set(m["ref_kernels_first_differ_at"]) == {"FULLY_CONNECTED"}, m["ref_kernels_first_differ_at"]
        assert m["ref_kernels_first_differ_at"]["FULLY_CONNECTED"]["max_lsb"] == 1
    if published:
        assert m["arena"]["needed"] <= MCU_MARGIN * mcu.arena_bytes(published)["needed"]
        assert m["flash"]["total"] <= MCU_MARGIN * mcu.flash_bytes(published)["total"]


def test_quantize_mcu_adds_rows_gates_and_the_index_section(tmp_path):
    """``quantize --mcu``: a tflite-micro row for the best int8 .tflite of each backend that writes
    one (the report says where the others went), its gate, and the index's "On a microcontroller"
    table and chart."""
    from r8.jobs.quantize import MCU_SCOPE

    model, data = trained_models.cached("digits")
    r8("quantize", "--model", model, "--data", data, "--out", tmp_path, "--configs", "tflite/int8-perchannel-meanpool",
       "tflite/int8-pertensor-meanpool", "--mcu", *trained_models.THRESHOLDS["digits"])
    q = json.loads((tmp_path / model.stem / "quantization.json").read_text())
    micro = [r for r in q["rows"] if r["backend"] == "tflite-micro"]
    best = min((r for r in q["rows"] if r["backend"] == "tflite"), key=lambda r: r["drop_pp"])  # ties: the first
    assert [r["config"] for r in micro] == [best["config"]] and micro[0]["env"]["engine"] == "tflite-micro"
    assert MCU_SCOPE in (tmp_path / model.stem / "quantization.md").read_text()
    assert any(g.name.startswith("TFLM top-1 = LiteRT's") and g.passed for g in map(Gate.from_json, q["gates"]))
    index = (tmp_path / "index.md").read_text()
    assert "## On a microcontroller" in index and "int8-perchannel-meanpool-train" in index
    assert (tmp_path / "mcu.png").is_file()


def _quantized_multiplier(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: m = q * 2^(shift - 31), q a Q31 integer."""
    q, shift = math.frexp(m)
    q = round(q * (1 << 31))
    return (q // 2, shift + 1) if q == 1 << 31 else (q, shift)


def _round_twice(acc: int, q: int, shift: int) -> int:
    """gemmlowp: SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT (TFLM's kernels)."""
    x = acc * (1 << max(shift, 0))
    high = x * q
    high = (high + (1 << 30) if high >= 0 else high + 1 - (1 << 30))
    high = int(high / (1 << 31))  # truncates toward zero, as the C++ division does
    exponent = max(-shift, 0)
    mask, remainder = (1 << exponent) - 1, high & ((1 << exponent) - 1)
    return (high >> exponent) + (remainder > (mask >> 1) + (high < 0))


def _round_once(acc: int, q: int, shift: int) -> int:
    """One rounding right shift of the 64-bit product (TFLITE_SINGLE_ROUNDING)."""
    total = 31 - shift
    return (acc * q + (1 << (total - 1))) >> total


def test_fully_connected_parts_by_rounding_mode(reference, cifar10):
    """Why FULLY_CONNECTED parts TFLM from LiteRT's reference kernels: recomputed here from its
    int8 input, weights and bias, TFLM's output is the twice-rounded requantization and LiteRT's
    the once-rounded one, on every one of the first 100 test images."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    micro = mcu.interpreter(reference, 1 << 20, preserve_all_tensors=True)
    ref = Interpreter(model_path=str(reference), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                      experimental_preserve_all_tensors=True)
    ref.allocate_tensors()
    fc = next(op for op in ref._get_ops_details() if op["op_name"] == "FULLY_CONNECTED")
    (x_i, w_i, b_i), out_i = fc["inputs"][:3], fc["outputs"][0]
    details = {t["index"]: t for t in ref.get_tensor_details()}
    scale = lambda i: details[i]["quantization_parameters"]["scales"].astype(np.float64)  # noqa: E731
    x_zero, out_zero = details[x_i]["quantization"][1], details[out_i]["quantization"][1]
    weights, bias = ref.get_tensor(w_i).astype(np.int64), ref.get_tensor(b_i).astype(np.int64)
    multipliers = [_quantized_multiplier(float(np.float32(scale(x_i)[0] * s)) / scale(out_i)[0])
                   for s in np.broadcast_to(scale(w_i), len(weights))]
    parted = 0
    for image in cifar10.test.images[:100]:
        x = (image[None] ^ np.uint8(0x80)).view(np.int8)  # the reference's input: pixel - 128
        micro.set_input(x, 0)
        micro.invoke()
        ref.set_tensor(ref.get_input_details()[0]["index"], x)
        ref.invoke()
        acc = weights @ (micro.GetTensor(x_i, 0)["tensor_data"].reshape(-1).astype(np.int64) - x_zero) + bias
        for rounding, got in ((_round_twice, micro.GetTensor(out_i, 0)["tensor_data"]), (_round_once, ref.get_tensor(out_i))):
            want = np.clip([rounding(int(a), *m) + out_zero for a, m in zip(acc, multipliers)], -128, 127)
            np.testing.assert_array_equal(got.reshape(-1), want)
        parted += not np.array_equal(micro.GetTensor(out_i, 0)["tensor_data"].reshape(-1), ref.get_tensor(out_i).reshape(-1))
    assert parted > 0  # the two roundings do part on these images


def test_buffers_past_the_flatbuffer_are_refused_and_inlined(reference, cifar10, tmp_path):
    """The LiteRT quantizer writes a model with 256 KiB of weights or more with its buffers past the
    flatbuffer (offset / size); TFLite Micro reads those as empty and computes one output for every
    image (IC02: about chance). r8 refuses such a file by name, and ``inline_buffers`` (which r8's
    own LiteRT-quantizer files go through) gives back a file TFLM runs bit-exactly."""
    from ai_edge_litert.tools import flatbuffer_utils
    from litert_quantizer.model_modifier import ModelModifier, _PackedBufferData

    from r8.backends.litert import inline_buffers

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(reference.read_bytes()))
    packed = _PackedBufferData(model)  # the quantizer's own serializer of a large model, here on IC01's file
    outside = tmp_path / "offset_buffers.tflite"
    outside.write_bytes(bytes(ModelModifier(model)._serialize_model(model, packed)))
    with pytest.raises(R8Error, match="offset_buffers.tflite: .* buffers lie past the flatbuffer"):
        mcu.ops(outside)
    inline = tmp_path / "inline.tflite"
    inline.write_bytes(inline_buffers(outside.read_bytes()))
    images = cifar10.test.images[:20]
    assert np.array_equal(mcu._tflm_outputs(str(inline), images), mcu._tflm_outputs(str(reference), images))
    assert mcu.flash_bytes(inline)["weights"] == mcu.flash_bytes(reference)["weights"]


def test_r8s_litert_int8_file_of_ic02_runs_on_tflm(cifar10):
    """IC02's LiteRT-quantizer int8 .tflite (the CI config) on TFLite Micro: bit-exact with LiteRT's
    reference kernels on 50 test images, arena and flash within 5 % of the published int8 file's
    (the 10k-image row and its gates: test_ic02.py, under `slow`)."""
    from r8.calibration import calibration_set
    from r8.core import paths
    from r8.model import load_model

    ic02 = load_model(paths.mlcommons_dir() / "pretrainedResnet_large_float.tflite")
    litert = backend("litert")
    ours = litert.build(ic02, litert.default[0], calibration_set(cifar10, num_classes=ic02.num_classes))
    images = cifar10.test.images[:50]
    assert np.array_equal(mcu._tflm_outputs(str(ours), images), mcu._litert_outputs(str(ours), images, True))
    published = ic02.reference("int8")
    assert mcu.arena_bytes(ours)["needed"] <= MCU_MARGIN * mcu.arena_bytes(published)["needed"]
    assert mcu.flash_bytes(ours)["total"] <= MCU_MARGIN * mcu.flash_bytes(published)["total"]
