"""r8's gates (:mod:`r8.gates`), run on the models of ``--r8-model`` (default: the MLPerf Tiny
IC01 ResNet8) and the data of ``--r8-data``: Keras-vs-torch parity, fp32 top-1, ONNX parity, every
int8 config's drop, each backend's best, the published int8 reference."""

from r8.gates import (  # noqa: F401
                      test_best_config_within_target,
                      test_fp32_top1,
                      test_int8_drop,
                      test_int8_reference,
                      test_onnx_parity,
                      test_parity_keras_torch,
)
