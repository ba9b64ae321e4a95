"""The one exception type r8 raises for bad input."""


class R8Error(Exception):
    """Bad or missing input: the message names the file and the problem."""
