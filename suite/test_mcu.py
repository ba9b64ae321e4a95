"""#19: will it run on a microcontroller? int8 .tflite files on TFLite Micro (TFLM): the arena
found by bisection is the smallest that works and agrees with TFLM's own allocator; flash is the
file, split into weights and graph; bad input is refused naming the file (and the op); TFLM's
C++ prints stay off the console; and the IC01 gates against LiteRT and the MLCommons reference."""

import json

import numpy as np
import pytest
from cli_run import r8

from r8 import mcu, paths
from r8.backends import backend
from r8.errors import R8Error
from r8.metrics import paired_drop, top1

pytest.importorskip("tflite_micro", reason="TFLite Micro's Python interpreter (tflite-micro) is not installed")


@pytest.fixture(scope="module")
def reference():
    return paths.tflite_model_path(quantized=True)


def test_arena_is_the_smallest_that_runs_and_matches_tflms_allocator(reference):
    arena = mcu.arena_bytes(reference)
    assert mcu._runs(reference, arena["needed"]) and not mcu._runs(reference, arena["needed"] - 1)
    assert arena["recorded"]["total"] == arena["needed"] == arena["recorded"]["head"] + arena["recorded"]["tail"]


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
    float_model, garbage, unknown_op = (paths.tflite_model_path(quantized=False), tmp_path / "notes.tflite",
                                        tmp_path / "lsh.tflite")
    garbage.write_bytes(b"not a flatbuffer at all")
    _with_opcode(reference, unknown_op, 15)  # LSH_PROJECTION: a TFLite builtin TFLM does not have
    for path, reason in ((float_model, "not int8"), (garbage, "not a TFLite flatbuffer"),
                         (unknown_op, "op LSH_PROJECTION is not a TFLM builtin")):
        with pytest.raises(R8Error, match=reason) as e:
            mcu.interpreter(path)
        assert str(path) in str(e.value)
        done = r8("mcu", "--tflite", path, check=False)
        assert done.returncode == 2 and str(path) in done.stderr and "Traceback" not in done.stderr


def test_mcu_command_json_and_a_quiet_console(tmp_path):
    """``mcu --json`` on the suite's digits model: a row per int8 .tflite, TFLM's prints nowhere."""
    from test_models import _trained

    model, data = _trained("digits")
    done = r8("mcu", "--model", model, "--data", data, "--json")
    rows = json.loads(done.stdout)["rows"]  # stdout is the JSON alone: no C++ print got into it
    assert len(rows) == 4 and {"file", "config", "top1", "litert_top1", "bitexact_ref_kernels", "differs_xnnpack",
                               "arena_bytes", "flash_bytes", "ops"} <= set(rows[0])
    assert "RecordingMicroAllocator" not in done.stderr and "resource variables" not in done.stderr
    for row in rows:
        assert row["arena_bytes"] > 0 and row["flash_bytes"] > 0 and "CONV_2D" in row["ops"]


@pytest.mark.accuracy
def test_ic01_best_tflite_config_on_tflm(r8_model, r8_int8_rows, r8_data, reference, report):
    """The gates of #19 on r8's best TFLite int8 config for IC01, over the 10k test images: TFLM's
    top-1 equals LiteRT's within the paired 95 % interval; its outputs are LiteRT's reference
    kernels' bit for bit; its arena and flash are within 5 % of the MLCommons reference's."""
    best = min((r8_int8_rows("tflite", c) for c in backend("tflite").default), key=lambda r: r["drop_pp"])
    m = mcu.measure(best["artifact"], r8_data.test.images)
    labels = r8_data.test.labels
    vs_litert = paired_drop(m["litert_probs"], m["probs"], labels)
    report(f"IC01 {best['config']} on TFLM", f"top-1 {top1(m['probs'], labels):.2%} (LiteRT {top1(m['litert_probs'], labels):.2%}), "
           f"{m['differs_ref_kernels']} outputs differ from LiteRT's reference kernels, {m['differs_xnnpack']} from XNNPACK "
           f"({m['differs_xnnpack_top1']} top-1), arena {m['arena']['needed']:,} B, flash {m['flash']['total']:,} B, "
           f"TFLM {m['tflm_s']:.0f} s")
    lo, hi = vs_litert["drop_ci95_pp"]
    assert lo <= 0 <= hi
    assert m["bitexact_ref_kernels"], f"{m['differs_ref_kernels']} images differ from LiteRT's reference kernels"
    assert m["arena"]["needed"] <= 1.05 * mcu.arena_bytes(reference)["needed"]
    assert m["flash"]["total"] <= 1.05 * mcu.flash_bytes(reference)["total"]
