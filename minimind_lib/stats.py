"""How sure a probe's number is: item-by-item scores, 95% intervals, and before/after changes.

A probe scores items (a question right or wrong, a document's loss). `Score` keeps the
item-by-item values, so that the same items can be compared before and after a stage:

- a rate (every item 0 or 1) gets the Wilson interval, which stays inside [0, 1] and is
  sound for small n and for rates near 0 or 1, where the textbook p +- 1.96 sqrt(p(1-p)/n)
  is not;
- any other score, e.g. a loss = sum of nats / sum of tokens, gets a bootstrap interval
  (resample the items with replacement, recompute, take the 2.5% and 97.5% quantiles);
- a change after - before on the same items gets a *paired* bootstrap: each resample draws
  the same items for both, so what the items have in common cancels out, and the interval is
  much narrower than two separate intervals would suggest.

Items can carry a group (the same fact asked in four phrasings, say): the bootstrap then
resamples whole groups, because items of one group are not independent evidence. That makes
the interval of a change, which decides whether a stage improved a probe, the stricter one; a
rate's own Wilson interval counts the items as they are.
Everything is deterministic: the bootstrap draws from a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
RESAMPLES = 4000
SEED = 0


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a rate of `successes` out of `n` (95% by default)."""
    if n <= 0:
        raise ValueError("a rate needs at least one item")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Score:
    """A probe's value over n items: sum(num) / sum(den); den is 1 for every item of a rate.

    `groups` (optional, one label per item) marks items that are resampled together.
    Formats like a float: f"{score:.1%}".
    """

    num: tuple[float, ...]
    den: tuple[float, ...] | None = None
    groups: tuple | None = None

    def __post_init__(self):
        if not self.num:
            raise ValueError("a score needs at least one item")
        for name in ("den", "groups"):
            part = getattr(self, name)
            if part is not None and len(part) != len(self.num):
                raise ValueError(f"{name} has {len(part)} entries for {len(self.num)} items")

    @classmethod
    def of(cls, values: Sequence[float], den: Sequence[float] | None = None, groups: Sequence | None = None) -> Score:
        return cls(tuple(float(v) for v in values), None if den is None else tuple(float(d) for d in den),
                   None if groups is None else tuple(groups))

    @property
    def n(self) -> int:
        return len(self.num)

    @property
    def value(self) -> float:
        den = self.n if self.den is None else sum(self.den)
        return sum(self.num) / den

    @property
    def is_rate(self) -> bool:
        """Every item is 0 or 1 and counts once."""
        return self.den is None and all(v in (0.0, 1.0) for v in self.num)

    def interval(self) -> tuple[float, float]:
        """95% interval: Wilson for a rate, else a bootstrap (over groups, when given)."""
        if self.is_rate:
            return wilson(sum(self.num), self.n)
        draws = _ratio(self, _resample(self.n, self.groups))
        return _quantiles(draws)

    def __float__(self) -> float:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def _resample(n: int, groups: tuple | None, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) weights: how often each item is drawn in each bootstrap resample.
    With groups, whole groups are drawn (each group as often as its items)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        index = rng.integers(0, n, size=(resamples, n))
        return np.stack([np.bincount(row, minlength=n) for row in index])
    labels = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    member = np.array([labels[g] for g in groups])
    index = rng.integers(0, len(labels), size=(resamples, len(labels)))
    counts = np.stack([np.bincount(row, minlength=len(labels)) for row in index])
    return counts[:, member]


def _ratio(score: Score, weights: np.ndarray) -> np.ndarray:
    num = weights @ np.asarray(score.num)
    den = weights @ (np.ones(score.n) if score.den is None else np.asarray(score.den))
    return num / den


def _quantiles(draws: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)


@dataclass(frozen=True)
class Change:
    """after - before on the same items, with its paired-bootstrap 95% interval."""

    value: float
    low: float
    high: float
    n: int

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def change(before: Score, after: Score) -> Change:
    """The change after - before, measured on the same items (paired bootstrap)."""
    if before.n != after.n:
        raise ValueError(f"before and after score different items ({before.n} vs {after.n})")
    if before.groups != after.groups:
        raise ValueError("before and after group their items differently")
    weights = _resample(before.n, before.groups)
    draws = _ratio(after, weights) - _ratio(before, weights)
    low, high = _quantiles(draws)
    return Change(after.value - before.value, low, high, before.n)
