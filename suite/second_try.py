"""One more independent try for a test that asserts on a 95 % interval of real timings: such an
interval misses the truth one time in twenty by design, so the test would fail that often by
chance; two independent tries both miss it one time in 400."""

from typing import Callable, TypeVar

T = TypeVar("T")


def twice(attempt: Callable[[int], T], accept: Callable[[T], bool]) -> tuple[T, list[T]]:
    """``attempt(0)``, and where ``accept`` refuses its result ``attempt(1)``: the last result and all."""
    results = []
    for n in range(2):
        results.append(attempt(n))
        if accept(results[-1]):
            break
    return results[-1], results
