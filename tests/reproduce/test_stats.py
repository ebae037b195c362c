"""The statistics of a reproduction against hand-computed values."""
import math

import pytest

from pyfacex.reproduce.stats import VERDICTS, Summary, paired, summarize, t_quantile, verdict


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_matches_the_closed_forms_of_one_and_two_degrees_of_freedom(p):
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


@pytest.mark.parametrize("df, expected", [(3, 3.182446305), (4, 2.776445105), (9, 2.262157163), (30, 2.042272456)])
def test_t_quantile_matches_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, rel=1e-8)
    assert t_quantile(0.025, df) == pytest.approx(-expected, rel=1e-8)


@pytest.mark.parametrize("p, df", [(0.0, 3), (1.0, 3), (0.9, 0), (0.9, 2.5)])
def test_t_quantile_refuses_bad_arguments(p, df):
    with pytest.raises(ValueError, match="p:|df:"):
        t_quantile(p, df)


def test_summary_is_the_mean_sample_std_and_t_interval():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)   # squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5 over n - 1 = 3
    half = 3.182446305 * std / 2   # t_{0.975, 3} · std / √4
    assert (s.n, s.mean) == (4, pytest.approx(2.5))
    assert s.std == pytest.approx(std, rel=1e-12)
    assert s.half_width == pytest.approx(half, rel=1e-8)
    assert (s.low, s.high) == (pytest.approx(2.5 - half, rel=1e-8), pytest.approx(2.5 + half, rel=1e-8))


def test_one_value_has_no_interval_and_json_shows_none():
    s = summarize([0.7])
    assert s.mean == 0.7 and math.isnan(s.std) and math.isnan(s.half_width)
    assert s.as_dict() == {"n": 1, "mean": 0.7, "std": None, "half_width": None, "low": None, "high": None}
    with pytest.raises(ValueError, match="values"):
        summarize([])
    with pytest.raises(ValueError, match="values"):
        summarize([1.0, float("nan")])


def test_paired_differences_use_the_seeds_both_variants_have():
    result = paired({0: 0.80, 1: 0.75, 2: 0.90, 3: 0.5}, {0: 0.70, 1: 0.72, 2: 0.80})
    assert result.seeds == (0, 1, 2)
    assert result.differences == pytest.approx((0.10, 0.03, 0.10))
    # mean 0.23 / 3; deviations 0.0233.., -0.0466.., 0.0233..: std = sqrt(0.003266../2)
    assert result.summary.mean == pytest.approx(0.23 / 3)
    assert result.summary.std == pytest.approx(math.sqrt((2 * 0.07 ** 2 / 9 + 0.14 ** 2 / 9) / 2))
    assert result.summary.half_width == pytest.approx(4.302652730 * result.summary.std / math.sqrt(3), rel=1e-8)
    with pytest.raises(ValueError, match="no seed in common"):
        paired({0: 1.0}, {1: 1.0})


def _summary(mean, low, n=3):
    return Summary(n, mean, 1.0, mean - low, low, 2 * mean - low)


@pytest.mark.parametrize("difference, direction, margin, expected", [
    (_summary(1.0, 0.2), ">", 0.0, VERDICTS[0]),             # ordering holds, the CI excludes 0
    (_summary(1.0, -0.2), ">", 0.0, VERDICTS[1]),            # ordering holds, the CI reaches 0
    (_summary(-0.1, -1.0), ">", 0.0, VERDICTS[2]),           # the other way round
    (_summary(0.0, -1.0), ">", 0.0, VERDICTS[2]),            # a tie is no "better"
    (summarize([0.4]), ">", 0.0, VERDICTS[1]),               # one seed: no interval, never significant
    (_summary(-0.2, -0.4), ">=", 0.5, VERDICTS[0]),          # a loss, but surely within the margin
    (_summary(-0.2, -0.7), ">=", 0.5, VERDICTS[1]),          # within the margin on average only
    (_summary(-0.6, -1.0), ">=", 0.5, VERDICTS[2]),          # worse than the margin
    (_summary(0.3, 0.1), ">=", 0.0, VERDICTS[0]),
])
def test_each_verdict_branch(difference, direction, margin, expected):
    assert verdict(difference, direction, margin) == expected


def test_verdict_refuses_a_bad_direction_or_margin():
    with pytest.raises(ValueError, match="direction"):
        verdict(_summary(1.0, 0.5), "<")
    with pytest.raises(ValueError, match="margin"):
        verdict(_summary(1.0, 0.5), ">", 0.5)
    with pytest.raises(ValueError, match="margin"):
        verdict(_summary(1.0, 0.5), ">=", -1.0)
