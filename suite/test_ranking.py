"""The fastest runtime is decided by paired rounds among the contenders (r8.runtimes.ranking), with
runtimes whose costs the test sets by sleeping: a known order comes out in order, two copies of one
runtime tie, a warm-up spike never makes a runtime the fastest, and a runtime a lucky block median
left outside the margin is admitted when it beats the winner."""

import time

import pytest
from second_try import twice

from r8.runtimes.ranking import contenders, rank, rank_all

pytestmark = pytest.mark.quiet  # real timings: alone, after the parallel tests

FAST = {"gap_s": 0.0, "cap_s": 20.0}  # sleeps leave no thread pool spinning: no gap needed


def sleeper(seconds: float):
    return lambda: time.sleep(seconds)


def test_three_runtimes_with_set_costs_come_out_in_order(report):
    calls = {"slow": sleeper(0.004), "fast": sleeper(0.001), "middle": sleeper(0.002)}
    ranking = rank(1, calls, {"slow": 0.004, "fast": 0.001, "middle": 0.002}, margin=4.0, **FAST)
    report("ranking of sleeps of 1, 2 and 4 ms", ranking.verdict())
    assert ranking.contenders == ("fast", "middle", "slow") and len(ranking.comparisons) == 3
    assert ranking.fastest == ("fast",) and not ranking.tie
    assert ranking.order() == ["fast", "middle", "slow"]
    assert ranking.beaten_by("slow") == ["fast", "middle"]


def test_two_copies_of_one_runtime_tie(report):
    """A 95 % interval tells two alike runtimes apart one time in twenty by design: a second,
    independent try where the first does (:func:`second_try.twice`)."""
    def attempt(n: int):
        return rank(1, {"a": sleeper(0.002), "b": sleeper(0.002)}, {"a": 0.002, "b": 0.002}, seed=n, **FAST)

    ranking, tries = twice(attempt, lambda r: r.tie)
    shown = [f"{c.ratio:.3f} [{c.ci95[0]:.3f}, {c.ci95[1]:.3f}] {c.verdict}" for r in tries for c in r.comparisons]
    report("two copies of a 2 ms sleep", "; ".join(shown))
    assert ranking.tie and set(ranking.fastest) == {"a", "b"} and "a tie" in ranking.verdict(), shown


def test_a_warm_up_spike_does_not_make_a_runtime_the_fastest(report):
    """Its first calls are ten times as slow, then it costs what the steady one does: alike after
    the spike, so a second try where chance names it the fastest (:func:`second_try.twice`)."""
    def attempt(n: int):
        calls_made = []

        def spiky():
            calls_made.append(1)
            time.sleep(0.02 if len(calls_made) <= 5 else 0.002)

        start = time.perf_counter()
        spiky()
        assert time.perf_counter() - start > 0.015  # the premise: a spike at first
        return rank(1, {"steady": sleeper(0.002), "spiky": spiky}, {"steady": 0.002, "spiky": 0.0021}, seed=n, **FAST)

    ranking, tries = twice(attempt, lambda r: "steady" in r.fastest)
    report("a warm-up spike against a steady runtime", "; ".join(r.verdict() for r in tries))
    assert "steady" in ranking.fastest and ranking.fastest != ("spiky",)


def test_contenders_are_the_runtimes_within_the_margin_of_the_leader():
    medians = {"a": 1.0, "b": 1.2, "c": 1.3, "d": 0.9}
    assert contenders(medians) == ("d", "a")  # 0.9 * 1.25 = 1.125
    assert contenders(medians, margin=0.5) == ("d", "a", "b", "c")


def test_a_runtime_outside_the_margin_that_beats_the_winner_is_admitted(report):
    """Block medians that lie (a lucky block for "lucky", a slow one for "true"): the ranking starts
    with "lucky" alone, its comparisons with the rest find "true" faster, and "true" is ranked and
    named the fastest; the final winner's comparisons cover every runtime left outside."""
    calls = {"true": sleeper(0.001), "lucky": sleeper(0.002), "slow": sleeper(0.008)}
    medians = {"true": 0.003, "lucky": 0.001, "slow": 0.008}
    assert contenders(medians) == ("lucky",)  # the premise: the margin leaves the true leader out
    ranking, rest = rank_all(1, calls, medians, "each runtime vs the fastest", **FAST)
    report("a true leader outside the margin", ranking.verdict())
    assert ranking.fastest == ("true",) and set(ranking.contenders) == {"lucky", "true"}
    assert [(c.a, c.b, c.verdict) for c in rest] == [("true", "slow", "faster")]
