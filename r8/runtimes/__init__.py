"""Runtimes: one ``predict(images) -> probabilities`` over every engine r8 measures on (torch,
ONNX Runtime, OpenVINO, LiteRT, Keras), TensorFlow Lite for Microcontrollers, and how two or
more of them are timed against each other (``timing``, ``ranking``). They run files that others
built: may import the core values and the front-ends' readers, never a backend, report or job."""
