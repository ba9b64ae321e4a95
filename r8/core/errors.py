"""The one exception type r8 raises for bad input."""


# A declared tensor (a weight, an input, a layer's output) beyond this is refused as damage before
# anything is allocated: no TinyML model comes near it.
MAX_TENSOR_BYTES = 1 << 30
MAX_ELEMENTS = MAX_TENSOR_BYTES // 4  # of float32


class R8Error(Exception):
    """Bad or missing input: the message names the file and the problem."""


def cause(e: BaseException) -> str:
    """A third-party exception as one line for an R8Error's message: its type and its message's
    first line, at most 300 characters (the rest is the library's traceback talk)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
