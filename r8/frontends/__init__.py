"""Front-ends: a model file in, a torch ``GraphModule`` out, without TensorFlow. ``convert`` is
the graph builder and picks the reader by file suffix; ``keras/`` reads ``.h5`` and ``.keras``
(one converter per layer type), ``tflite/`` reads float ``.tflite`` (one converter per op), and
``onnx_route`` is the Keras -> ONNX -> onnx2torch fallback. May import only the core values
(``r8.core.errors``, ``r8.core.paths``, ``r8.core.cache``, ``r8.core.console``, ...), never a backend, runtime, report
or job."""
