"""Runtimes: one ``predict(images) -> probabilities`` over every engine r8 measures on (torch,
ONNX Runtime, OpenVINO, LiteRT, Keras) and TensorFlow Lite for Microcontrollers. They run files
that others built: may import the core values and the front-ends' readers, never a backend,
report or job."""
