"""ExecuTorch (r8.backends.executorch): PT2E with XNNPACK's quantizer, lowered to a ``.pte`` and run
by ExecuTorch's runtime. On IC01: the ``.pte`` gives the PT2E program's top-1 within the paired
interval; XNNPACK runs nearly every op, and the report names the ones it does not; the program reads
its input in the dim order it was exported with; its ETDump times each op XNNPACK runs. Its drop
gates run with every backend's (test_gates.py)."""

import numpy as np
import pytest
import torch

from r8 import artifacts
from r8.backends import backend, missing
from r8.backends.executorch import MAX_BATCH, XnnpackConfig, quantized_program
from r8.backends.torch_flows import image_batches
from r8.core.cache import build_facts
from r8.metrics import paired_drop, predict, top1
from r8.runtimes.runners import torch_input

pytestmark = pytest.mark.skipif(missing("executorch", "executorch", "executorch") is not None,
                                reason=str(missing("executorch", "executorch", "executorch")))
CONFIG = XnnpackConfig()


@pytest.fixture(scope="module")
def pte(ic01, calibration):
    return backend("executorch").build(ic01, CONFIG, calibration)


def test_a_missing_executorch_is_named_with_its_extra():
    assert missing("r8_no_such_module", "executorch", "executorch") == \
        "executorch is not installed (pip install 'r8[executorch]')"


@pytest.mark.accuracy
def test_the_pte_gives_the_pt2e_programs_top1(ic01, calibration, pte, test_split, report):
    """The same quantized program twice: PT2E's in Python (reference kernels) and the .pte on
    XNNPACK's int8 kernels, which requantize in their own way, so predictions may differ a little:
    the paired 95 % interval of the top-1 difference must contain 0."""
    program, _ = quantized_program(artifacts.torch_fp32(ic01), CONFIG, calibration.images)
    module = program.module()
    with torch.no_grad():
        pt2e = np.concatenate([module(batch).numpy() for batch in image_batches(test_split.images, False, MAX_BATCH)])
    ours = predict(backend("executorch").runner(CONFIG, pte), test_split.images, progress=False)
    paired = paired_drop(pt2e, ours, test_split.labels)
    drop = (top1(pt2e, test_split.labels) - top1(ours, test_split.labels)) * 100
    report("IC01 ExecuTorch .pte vs its PT2E program (10k): top-1 difference pp [95 % CI], argmax agreement",
           f"{drop:.2f} [{paired['drop_ci95_pp'][0]:.2f}, {paired['drop_ci95_pp'][1]:.2f}], "
           f"{np.mean(pt2e.argmax(1) == ours.argmax(1)):.2%}")
    assert paired["drop_ci95_pp"][0] <= 0 <= paired["drop_ci95_pp"][1]


def test_xnnpack_runs_nearly_every_op_and_the_rest_are_named(pte, report):
    facts = build_facts(pte)
    report("IC01 ExecuTorch: ops delegated to XNNPACK, portable ops",
           f"{facts['delegated_ops']}/{facts['ops']} ({facts['delegated_share']:.1%}); {facts['portable_ops']}")
    assert facts["delegated_share"] >= 0.9 and facts["int8_convs"] == 9  # IC01's 9 convolutions, all int8
    assert all("conv" not in op and "linear" not in op and "add" not in op for op in facts["portable_ops"])


def test_the_program_reads_its_input_in_its_exported_dim_order(pte, test_split):
    """Premise and fix: the same images as a channels-last tensor (what a permuted NHWC array is)
    come out wrong when handed to the program as they are; the runner hands it contiguous NCHW."""
    runner = backend("executorch").runner(CONFIG, pte)
    images = test_split.images[:64]
    channels_last = torch_input(images)
    assert not channels_last.is_contiguous()
    right = runner.predict(images)
    raw = runner.method.execute((channels_last,))[0].numpy()
    assert np.mean(raw.argmax(1) == right.argmax(1)) < 0.5
    assert np.mean(right.argmax(1) == test_split.labels[:64]) > 0.75


def test_the_runner_runs_on_the_pools_own_size_and_refuses_another(pte):
    """XNNPACK's pool keeps its default size: resizing it in-process aborted or hung the process."""
    from r8 import R8Error
    from r8.runtimes.runners import pool_threads

    size = pool_threads()
    assert backend("executorch").runner(CONFIG, pte, threads=size).threads == size
    with pytest.raises(R8Error, match=f"thread pool at its default size, {size} threads, not {size + 1}"):
        backend("executorch").runner(CONFIG, pte, threads=size + 1)


def test_an_etdump_profile_names_the_ops_xnnpack_runs(pte, test_split):
    """ExecuTorch's ETDump times each op inside the XNNPACK delegate: IC01's 9 convolutions (int8),
    3 adds and its dense layer, by XNNPACK's names; they sum to no more than the delegate's runs."""
    from r8.runtimes.profile import Profile, by_kind, executorch_profile

    p = executorch_profile(pte, test_split.images[:4])
    kinds = by_kind(p)
    assert p.engine == "executorch" and kinds["conv"][0] == 9 and kinds["add"][0] == 3 and kinds["dense"][0] == 1
    assert all("F32" not in t.op for t in p.ops if t.op.startswith("Convolution"))  # QS8 or QC8
    assert 0 < sum(t.us for t in p.ops) <= p.bare_us * 1.5 and p.runner_us > 0
    assert Profile.from_dict(p.as_dict()) == p


def _int8_adds(program) -> int:
    """Adds in the int8 pattern (XNNPACK's partitioner runs these in int8): every input a dequantize
    node, the output (after a fused ReLU) a quantize node."""
    def is_q(n):
        return "quantize_per" in str(n.target) and "dequantize" not in str(n.target)

    count = 0
    for node in program.graph.nodes:
        if node.op != "call_function" or "aten.add" not in str(node.target):
            continue
        out = node
        if len(out.users) == 1 and "relu" in str(next(iter(out.users)).target):
            out = next(iter(out.users))
        count += all("dequantize_per" in str(i.target) for i in node.all_input_nodes) and \
            len(out.users) == 1 and is_q(next(iter(out.users)))
    return count


def test_a_residual_add_is_kept_float(ic01, calibration, test_split):
    """With IC01's first add filtered out of XNNPACK's quantizer, the program has one add in the
    int8 pattern fewer, and its ``.pte`` lowers and classifies (a search unit, as on every backend)."""
    fp32, images = artifacts.torch_fp32(ic01), calibration.images[:64]
    assert [_int8_adds(quantized_program(fp32, CONFIG, images, kept)[0]) for kept in ((), ("add",))] == [3, 2]
    b = backend("executorch")
    runner = b.runner(CONFIG, b.build_mixed(ic01, CONFIG, calibration, ("add",)))
    assert np.mean(runner.predict(test_split.images[:500]).argmax(1) == test_split.labels[:500]) > 0.8
