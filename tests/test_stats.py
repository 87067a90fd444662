"""95% intervals of the probes (minimind_lib.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minimind_lib.stats import Score, change, wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # Wilson score intervals, z = 1.96, computed independently
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (54, 100, 0.4426, 0.6344),
    ],
)
def test_wilson_matches_the_formula(k, n, low, high):
    assert wilson(k, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_half_width_shrinks_like_one_over_root_n():
    widths = {n: np.subtract(*wilson(n // 2, n)[::-1]) for n in (50, 200, 800)}
    assert widths[50] > 0.25 and widths[200] < 0.14 and widths[800] < 0.07  # +-7 points needs n of ~200
    assert widths[200] / widths[800] == pytest.approx(2, rel=0.05)


def test_a_rate_uses_wilson_and_a_ratio_the_bootstrap():
    rate = Score.of([1, 0, 1, 1, 0, 0, 1, 1])
    assert rate.is_rate and rate.value == 5 / 8 and rate.interval() == wilson(5, 8)
    assert f"{rate:.1%}" == "62.5%" and float(rate) == 5 / 8
    loss = Score.of([3.0, 1.0, 2.0, 6.0], den=[3, 1, 1, 3])  # nats, tokens: 12 / 8
    assert loss.value == 1.5 and not loss.is_rate
    low, high = loss.interval()
    assert low < 1.5 < high
    assert loss.interval() == (low, high)  # a fixed seed: the same interval every time


def test_groups_are_resampled_whole():
    # Four items, two groups; within a group the items agree: two independent pieces of evidence.
    grouped = Score.of([0.0, 0.0, 1.0, 1.0, 0.5, 0.5], groups=["a", "a", "b", "b", "c", "c"])
    alone = Score.of([0.0, 0.0, 1.0, 1.0, 0.5, 0.5])
    assert grouped.value == alone.value == 0.5
    g_low, g_high = grouped.interval()
    a_low, a_high = alone.interval()
    assert g_high - g_low > a_high - a_low
    # the change: before all wrong, after right on one of the two groups only
    labels = ["a"] * 4 + ["b"] * 4
    before, after = Score.of([0] * 8, groups=labels), Score.of([1] * 4 + [0] * 4, groups=labels)
    assert change(before, after).low == 0.0  # a resample holds group b twice a quarter of the time
    assert change(Score.of(before.num), Score.of(after.num)).low > 0.0  # as eight independent items


def test_paired_change_is_narrower_than_two_separate_intervals():
    rng = np.random.default_rng(1)
    hard = rng.random(300) < 0.5  # items that are hard before and after
    before = Score.of(~hard & (rng.random(300) < 0.8))
    after = Score.of((~hard & (rng.random(300) < 0.95)) | (hard & (rng.random(300) < 0.1)))
    delta = change(before, after)
    assert delta.value == pytest.approx(after.value - before.value)
    assert delta.low < delta.value < delta.high
    separate = (after.interval()[1] - after.interval()[0]) + (before.interval()[1] - before.interval()[0])
    assert delta.high - delta.low < separate
    assert delta.n == 300


def test_no_change_gives_an_interval_of_zero_width():
    same = Score.of([1, 0, 1, 0, 1])
    delta = change(same, same)
    assert delta.value == delta.low == delta.high == 0.0


def test_mismatched_items_are_refused():
    with pytest.raises(ValueError, match="different items"):
        change(Score.of([1, 0]), Score.of([1, 0, 1]))
    with pytest.raises(ValueError, match="group"):
        change(Score.of([1, 0], groups=["a", "b"]), Score.of([1, 0]))
    with pytest.raises(ValueError, match="den has 1 entries for 2 items"):
        Score.of([1, 0], den=[1])
    with pytest.raises(ValueError, match="at least one item"):
        Score.of([])
    with pytest.raises(ValueError, match="at least one item"):
        wilson(0, 0)
    assert math.isclose(Score.of([0.5, 0.25]).value, 0.375)
