"""The one exception type r8 raises for bad input."""


# A declared tensor (a weight, an input, a layer's output) beyond this is refused as damage before
# anything is allocated: no TinyML model comes near it.
MAX_TENSOR_BYTES = 1 << 30
MAX_ELEMENTS = MAX_TENSOR_BYTES // 4  # of float32


class R8Error(Exception):
    """Bad or missing input: the message names the file and the problem."""
