"""The fastest runtime at one batch size, decided by paired rounds, never by unpaired medians.

Per-block medians only choose the contenders: every runtime within ``margin`` of the leader's
median. Each pair of contenders is then timed in interleaved rounds (:func:`r8.runtimes.timing.compare`).
A runtime is among the fastest when no other contender beats it with an interval above 1.0;
several such runtimes are a tie, and the ranking says so. :func:`rank_all` then times the winner
against every runtime outside the contenders, and admits one that beats it: a lucky block median
can push the true leader past the margin."""

from dataclasses import dataclass
from itertools import combinations
from typing import Callable

from r8.runtimes.timing import CAP_S, Comparison, compare

MARGIN = 0.25  # a runtime whose block median is more than 25 % above the leader's is not a contender


def decided(c: Comparison) -> tuple[str, str] | None:
    """(winner, loser) of a comparison whose interval excludes 1.0; None where it cannot tell."""
    if c.verdict == "no significant difference":
        return None
    return (c.a, c.b) if c.verdict == "faster" else (c.b, c.a)


@dataclass(frozen=True)
class Ranking:
    batch: int
    contenders: tuple[str, ...]  # by block median, fastest first
    comparisons: tuple[Comparison, ...]  # every pair of contenders

    def beaten_by(self, name: str) -> list[str]:
        """The contenders that beat ``name`` with an interval above 1.0."""
        return [d[0] for d in map(decided, self.comparisons) if d and d[1] == name]

    @property
    def fastest(self) -> tuple[str, ...]:
        """The contenders no other beats; more than one: a tie."""
        return tuple(n for n in self.contenders if not self.beaten_by(n))

    @property
    def tie(self) -> bool:
        return len(self.fastest) > 1

    def order(self) -> list[str]:
        """The contenders by paired wins (most first), then by block median."""
        wins = [d[0] for d in map(decided, self.comparisons) if d]
        return sorted(self.contenders, key=lambda n: (-wins.count(n), self.contenders.index(n)))

    def verdict(self) -> str:
        """The ranking's sentence for the report."""
        if self.tie:
            return f"a tie at batch {self.batch}: {', '.join(self.fastest)} (no paired interval tells them apart)"
        return f"{self.fastest[0]} is the fastest at batch {self.batch}, in paired rounds against {len(self.contenders) - 1} " \
               "other contender(s)"

    def as_dict(self) -> dict:
        return {"batch": self.batch, "contenders": list(self.contenders), "fastest": list(self.fastest), "tie": self.tie,
                "order": self.order(), "verdict": self.verdict(), "comparisons": [c.as_dict() for c in self.comparisons]}


def contenders(medians: dict[str, float], margin: float = MARGIN) -> tuple[str, ...]:
    """The runtimes whose block median (seconds) is within ``margin`` of the leader's, fastest first."""
    leader = min(medians.values())
    return tuple(sorted((n for n, s in medians.items() if s <= leader * (1 + margin)), key=medians.get))


def rank(batch: int, calls: dict[str, Callable[[], object]], medians: dict[str, float], margin: float = MARGIN,
         cap_s: float = CAP_S, **timing) -> Ranking:
    """Ranks the runtimes of ``calls`` (name -> one call at this batch size) whose block median in
    ``medians`` is within ``margin`` of the leader's, by a round-robin of paired comparisons."""
    names = contenders({n: medians[n] for n in calls}, margin)
    return Ranking(batch, names, round_robin(batch, calls, names, set(), cap_s, **timing))


def round_robin(batch: int, calls: dict[str, Callable[[], object]], names: tuple[str, ...], met: set,
                cap_s: float = CAP_S, **timing) -> tuple[Comparison, ...]:
    """Each pair of ``names`` not in ``met`` (frozensets of two names) timed in paired rounds."""
    return tuple(compare(f"ranking at batch {batch}", batch, (a, calls[a]), (b, calls[b]), cap_s=cap_s, **timing)
                 for a, b in combinations(names, 2) if frozenset((a, b)) not in met)


def admit(ranking: Ranking, calls: dict[str, Callable[[], object]], challengers: list[Comparison], cap_s: float = CAP_S,
          **timing) -> Ranking:
    """``ranking`` with the runtimes that ``challengers`` (the winner's comparisons with them) compare
    made contenders, each timed against every contender it has not yet met."""
    names = ranking.contenders + tuple(c.b for c in challengers)
    met = {frozenset((c.a, c.b)) for c in (*ranking.comparisons, *challengers)}
    new = round_robin(ranking.batch, calls, names, met, cap_s, **timing)
    return Ranking(ranking.batch, names, ranking.comparisons + tuple(challengers) + new)


def rank_all(batch: int, calls: dict[str, Callable[[], object]], medians: dict[str, float], name: str,
             margin: float = MARGIN, cap_s: float = CAP_S, **timing) -> tuple[Ranking, list[Comparison]]:
    """:func:`rank`, then the winner against each runtime outside the contenders (comparisons called
    ``name``); a runtime that beats it is admitted (:func:`admit`) and the new winner meets the rest
    again, until none beats it. Returns the ranking and the winner's comparisons with the rest."""
    ranking = rank(batch, calls, medians, margin, cap_s, **timing)
    while True:
        winner = ranking.order()[0]
        rest = [compare(name, batch, (winner, calls[winner]), (n, calls[n]), cap_s=cap_s, **timing)
                for n in calls if n not in ranking.contenders]
        beaten = [c for c in rest if c.verdict == "slower"]
        if not beaten:
            return ranking, rest
        ranking = admit(ranking, calls, beaten, cap_s, **timing)
