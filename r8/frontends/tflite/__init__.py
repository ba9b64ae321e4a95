"""Float ``.tflite`` files: the flatbuffer reader (TFLite's schema bindings) and one converter per
builtin op."""
