import math
import random

import numpy as np
import pytest

from course_utils.stats import (
    Interval,
    correlation,
    mean_interval,
    paired_difference,
    pooled_proportion,
    t_quantile,
    wilson_interval,
)


@pytest.mark.parametrize("df, printed", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042)])
def test_t_quantile_matches_the_printed_table(df, printed):
    assert abs(t_quantile(df) - printed) < 5e-4


def test_t_quantile_tends_to_the_normal_and_refuses_bad_degrees():
    assert abs(t_quantile(10_000) - 1.95996) < 1e-3
    assert abs(t_quantile(5, 0.5)) < 1e-9  # the median
    with pytest.raises(ValueError, match="df must be an integer >= 1"):
        t_quantile(0)


def test_the_t_interval_covers_a_known_mean_95_percent_of_the_time():
    rng = random.Random(0)
    trials, covered = 2000, 0
    for _ in range(trials):
        interval = mean_interval([rng.gauss(3.0, 2.0) for _ in range(3)])
        covered += interval.low <= 3.0 <= interval.high
    # binomial sd at 2000 trials is 0.5%; 1.96 (the normal quantile) instead of t would cover only about 80%
    assert 0.93 < covered / trials < 0.97


def test_the_wilson_interval_covers_a_known_proportion_and_stays_in_zero_one():
    rng = random.Random(1)
    trials, covered = 2000, 0
    for _ in range(trials):
        k = sum(rng.random() < 0.1 for _ in range(50))
        interval = wilson_interval(k, 50)
        covered += interval.low <= 0.1 <= interval.high
    assert 0.92 < covered / trials < 0.98
    none = wilson_interval(0, 100)
    assert none.mean == 0 and none.low == 0 and 0.03 < none.high < 0.04  # the 'rule of three' is 3%
    assert wilson_interval(100, 100).high == 1.0


def test_one_seed_is_a_demo_with_an_unbounded_interval():
    only = mean_interval([0.5])
    assert only.mean == 0.5 and only.low == -math.inf and only.high == math.inf and not only.excludes_zero()


def test_the_paired_difference_removes_what_a_seed_does_to_both_variants():
    # each seed shifts both variants by a large amount; b is better than a by exactly 0.01 on every seed
    seed_effect = [0.0, 0.5, -0.4, 0.3]
    a = [1.0 + e for e in seed_effect]
    b = [0.99 + e for e in seed_effect]
    paired = paired_difference(a, b)
    assert abs(paired.mean - 0.01) < 1e-12 and paired.half_width < 1e-9 and paired.excludes_zero()
    unpaired = mean_interval(a).mean - mean_interval(b).mean
    assert abs(unpaired - 0.01) < 1e-12
    assert mean_interval(a).half_width > 0.3  # unpaired, the seed effect swamps the 0.01
    with pytest.raises(ValueError, match="one value per seed in both"):
        paired_difference([1, 2, 3], [1, 2])


def test_a_mean_interval_agrees_with_a_hand_computation():
    values = [0.61, 0.65, 0.66]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    interval = mean_interval(values)
    assert isinstance(interval, Interval) and interval.n == 3
    assert abs(interval.half_width - 4.3027 * sd / math.sqrt(3)) < 1e-4


def test_pooled_adherence_counts_every_prompt_of_every_seed():
    interval = pooled_proportion([0.5, 0.25], 4)  # 2 + 1 successes of 8 prompts
    assert interval.n == 8 and abs(interval.mean - 3 / 8) < 1e-12


@pytest.mark.parametrize("call, match", [
    (lambda: mean_interval([]), "non-empty list of finite numbers"),
    (lambda: mean_interval([1.0, float("nan")]), "non-empty list of finite numbers"),
    (lambda: wilson_interval(5, 4), "0 <= successes <= n"),
    (lambda: pooled_proportion([0.5], 0), "n_per_seed must be an integer >= 1"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_an_interval_prints_its_mean_bounds_and_sample_size_in_any_format():
    interval = wilson_interval(148, 500)
    assert f"{interval:.1%}" == "29.6% [25.8%, 33.7%] (95%, n=500)"
    assert str(mean_interval([1.0, 2.0, 3.0])) == "2 [-0.4841, 4.484] (95%, n=3)"


def test_the_correlation_agrees_with_numpy_and_its_fisher_interval_with_a_hand_computation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = 0.6 * x + rng.normal(size=12)
    got = correlation(list(x), list(y))
    assert got.n == 12 and abs(got.mean - np.corrcoef(x, y)[0, 1]) < 1e-12
    z, half = math.atanh(got.mean), 1.959964 / math.sqrt(9)  # Fisher: atanh r is normal with standard error 1/sqrt(n-3)
    assert abs(got.low - math.tanh(z - half)) < 1e-6 and abs(got.high - math.tanh(z + half)) < 1e-6
    assert correlation([1, 2, 3, 4], [4, 3, 2, 1]).mean == -1.0 and correlation([1, 2, 3, 4], [8, 6, 4, 2]).low < -0.99
    assert correlation([1, 2, 3, 4, 5], [2, 4, 6, 8, 11]).high <= 1.0


def test_the_fisher_interval_covers_a_known_correlation_about_95_percent_of_the_time():
    rng, rho, covered = np.random.default_rng(1), 0.5, 0
    for _ in range(2000):
        x = rng.normal(size=10)
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=10)  # correlation rho with x
        interval = correlation(list(x), list(y))
        covered += interval.low <= rho <= interval.high
    assert 0.93 < covered / 2000 < 0.97


BAD_CORRELATIONS = [([1, 2, 3], [1, 2, 3], "at least 4"), ([1, 2, 3, 4], [1, 2, 3], "same number"),
                    ([1, 1, 1, 1], [1, 2, 3, 4], "constant"), ([1, 2, float("nan"), 4], [1, 2, 3, 4], "finite numbers")]


@pytest.mark.parametrize("x, y, match", BAD_CORRELATIONS)
def test_a_correlation_of_too_few_unequal_or_constant_values_is_refused(x, y, match):
    with pytest.raises(ValueError, match=match):
        correlation(x, y)
