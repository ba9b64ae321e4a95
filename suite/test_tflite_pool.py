"""TFLite's int8 AVERAGE_POOL_2D keeps its input's scale (the int8 spec), so a whole-map average
pool is quantized as coarsely as the map before it; r8's ``-meanpool`` configs convert it as MEAN,
which gets a scale of its own. Ids: ``test_global_pools_as_mean_keeps_the_function[keras2-resnet8]``."""

import numpy as np
import pytest
from keras_models import FAMILIES, random_inputs, randomize
from test_convert_models import DIALECTS, REL_TOL, keras_package

from r8.backends.tflite import TfliteConfig, build, global_pools_as_mean

WHOLE_MAP_POOLS = {"resnet8": 1, "mobilenet-v1-vww": 1, "dscnn-kws": 1,
                   "resnet-two-stages-odd-input": 0}  # a 12x12 pool over a 14x12 map is no global pool


@pytest.mark.parametrize("family", WHOLE_MAP_POOLS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_global_pools_as_mean_keeps_the_function(dialect, family, report):
    k = keras_package(dialect)
    k.utils.set_random_seed(0)
    model = FAMILIES[family](k)
    rng = np.random.default_rng(0)
    randomize(model, rng)
    rewritten = global_pools_as_mean(model, k)
    replaced = sum(isinstance(a, k.layers.AveragePooling2D) and isinstance(b, k.layers.GlobalAveragePooling2D)
                   for a, b in zip(model.layers, rewritten.layers))
    assert replaced == WHOLE_MAP_POOLS[family]
    x = random_inputs(model, rng)[0]
    want, got = np.asarray(model(x, training=False)), np.asarray(rewritten(x, training=False))
    err = np.abs(got - want).max() / np.abs(want).max()
    report(f"pools as mean {dialect}-{family}", f"{replaced} replaced, max |Δ| / scale {err:.1e}")
    assert err <= REL_TOL


def _pool_scales(path) -> dict[str, tuple[float, float]]:
    """{op name: (input scale, output scale)} of the pooling ops in a ``.tflite``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    tensors = interpreter.get_tensor_details()
    return {op["op_name"]: (tensors[op["inputs"][0]]["quantization"][0], tensors[op["outputs"][0]]["quantization"][0])
            for op in interpreter._get_ops_details() if op["op_name"] in ("AVERAGE_POOL_2D", "MEAN")}


@pytest.mark.accuracy
def test_meanpool_gives_the_pooled_vector_its_own_scale(ic01, calibration, report):
    plain, mean = (_pool_scales(build(ic01, TfliteConfig(True, m), calibration)) for m in (False, True))
    report("ResNet8 int8 pool scales (in, out)", f"AVERAGE_POOL_2D {plain}, MEAN {mean}")
    assert set(plain) == {"AVERAGE_POOL_2D"} and set(mean) == {"MEAN"}
    pool_in, pool_out = plain["AVERAGE_POOL_2D"]
    assert pool_out == pool_in  # the spec's constraint: the cause of the loss
    mean_in, mean_out = mean["MEAN"]
    assert mean_in == pool_in and mean_out < mean_in / 2  # the average of 64 activations, on a finer grid
