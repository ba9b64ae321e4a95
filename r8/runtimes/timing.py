"""Paired, interleaved timing of two runtimes, so a speed claim carries an interval like an
accuracy claim does. Each round times A and B on the same inputs, as A B B A or B A A B (drawn
from a seeded generator): a linear drift and the cost of going first or second then fall on both
alike. A round's ratio is B's time over A's (above 1: A is faster); the comparison's ratio is the
median over rounds with a bootstrap 95 % interval, and its verdict says which is faster or that
the interval cannot tell."""

import time
import zlib
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np

VERDICTS = ("faster", "slower", "no significant difference")
STOPS = ("interval excludes 1.0", "interval within ±3 %", "time cap")
HALF_WIDTH = 0.03  # stop once the interval lies within ±3 % of the ratio
CAP_S = 60.0  # the most time one comparison may take
MIN_CAPPED_ROUNDS = 10  # the time cap stops no comparison before this: a bootstrap of 3-5 rounds excludes 1.0 on noise
MIN_ROUNDS = 30  # the first look at the interval; later looks each time the rounds double (few looks, little optional-stopping bias)
SLOT_S = 0.02  # each slot of a round repeats its call until it lasts this long (timer resolution, per-call jitter)
WARM_S = 0.02  # and first, untimed, for this long: a thread pool that slept in the gap is slow for its first milliseconds
GAP_S = 0.06  # an idle pause before each slot: the thread pools the last runtime left spinning fall asleep first
RESAMPLES, SEED = 2_000, 0


@dataclass(frozen=True)
class Comparison:
    name: str  # what the report compares, e.g. "best int8 vs reference int8"
    batch: int
    a: str  # the runtimes: ratio > 1 when a is the faster
    b: str
    ratio: float  # median over rounds of (b's time / a's time)
    ci95: tuple[float, float]
    verdict: str  # one of VERDICTS, about a against b
    rounds: int
    stopped_by: str  # one of STOPS
    round_ratios: tuple[float, ...]  # every round's ratio, in order

    def as_dict(self) -> dict:
        return {**asdict(self), "ci95": list(self.ci95), "round_ratios": [round(r, 5) for r in self.round_ratios]}


def orders(seed: int) -> Iterator[str]:
    """The order of each round, "ABBA" or "BAAB", drawn from ``seed``: the same for the same seed."""
    rng = np.random.default_rng(seed)
    while True:
        yield "ABBA" if rng.random() < 0.5 else "BAAB"


def seed_of(*names) -> int:
    """A stable seed for one comparison (Python's hash() of a str changes per process)."""
    return zlib.crc32("|".join(map(str, names)).encode())


def interval(ratios: np.ndarray) -> tuple[float, float]:
    """A percentile-bootstrap 95 % interval of the median ratio (fixed seed)."""
    from scipy.stats import bootstrap

    ci = bootstrap((ratios,), np.median, n_resamples=RESAMPLES, method="percentile",
                   rng=np.random.default_rng(SEED)).confidence_interval
    return float(ci.low), float(ci.high)


def verdict(ci95: tuple[float, float]) -> str:
    low, high = ci95
    return "faster" if low > 1.0 else "slower" if high < 1.0 else "no significant difference"


def _decided(ratio: float, ci95: tuple[float, float]) -> str | None:
    if verdict(ci95) != "no significant difference":
        return STOPS[0]
    if ci95[1] / ratio - 1 <= HALF_WIDTH and 1 - ci95[0] / ratio <= HALF_WIDTH:
        return STOPS[1]
    return None


def repeated(call: Callable[[], object], seconds: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """Calls ``call`` until ``seconds`` have passed (at least once): the mean seconds per call."""
    start, n = clock(), 0
    while not n or clock() - start < seconds:
        call()
        n += 1
    return (clock() - start) / n


def compare(name: str, batch: int, a: tuple[str, Callable[[], object]], b: tuple[str, Callable[[], object]],
            cap_s: float = CAP_S, seed: int | None = None, clock: Callable[[], float] = time.perf_counter,
            gap_s: float = GAP_S) -> Comparison:
    """Times ``a`` and ``b`` (each a (runtime name, call with no arguments)) in interleaved rounds
    until the interval of their ratio excludes 1.0, lies within ±3 %, or ``cap_s`` has passed."""
    (a_name, a_call), (b_name, b_call) = a, b
    calls = {"A": a_call, "B": b_call}

    def slot(key: str) -> float:
        time.sleep(gap_s)
        repeated(calls[key], WARM_S, clock)  # untimed: wakes its thread pool
        return repeated(calls[key], SLOT_S, clock)

    ratios, look, stopped, started = [], MIN_ROUNDS, None, clock()
    for order in orders(seed_of(name, batch, a_name, b_name) if seed is None else seed):
        times = {"A": 0.0, "B": 0.0}
        for key in order:
            times[key] += slot(key)
        ratios.append(times["B"] / times["A"])
        capped = len(ratios) >= MIN_CAPPED_ROUNDS and clock() - started >= cap_s
        if len(ratios) >= look or capped:
            look *= 2
            ci = interval(np.array(ratios))
            stopped = _decided(float(np.median(ratios)), ci) or (STOPS[2] if capped else None)
            if stopped:
                break
    ratio = float(np.median(ratios))
    return Comparison(name, batch, a_name, b_name, ratio, ci, verdict(ci), len(ratios), stopped, tuple(ratios))
