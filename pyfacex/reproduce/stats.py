"""Statistics of a reproduction: mean, standard deviation and Student-t confidence interval over
seeds, paired differences between two variants trained on the same seeds, and the verdict of a claim.

The t quantile is computed here (the regularised incomplete beta function by its continued fraction,
inverted by bisection) so that the package needs no scipy.

Verdict rule (:func:`verdict`), on the paired differences d_s = sign · (claimed − baseline) over the
seeds s both variants finished, ``sign`` = +1 when the metric is higher-is-better, −1 otherwise, and
the threshold t = 0 for a ``">"`` claim, t = −margin for a ``">="`` ("not worse by more than margin")
claim:

- ``reproduced``: the lower end of the 95 % CI of mean(d) lies above t (with a ``">"`` claim: the
  ordering holds and the interval excludes 0; with ``">="``: any loss is smaller than the margin);
- ``same direction, not significant``: mean(d) > t but the interval reaches t (or a single seed:
  no interval);
- ``not reproduced``: mean(d) <= t.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["VERDICTS", "Summary", "Paired", "t_quantile", "summarize", "paired", "verdict"]

VERDICTS = ("reproduced", "same direction, not significant", "not reproduced")
"""The three verdicts of a claim, strongest first."""

_LEVEL = 0.95


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (e.g. 12.706 for p = 0.975, df = 1).

    Raises:
        ValueError naming ``p`` outside (0, 1) or ``df`` < 1.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p: expected a probability in (0, 1), got {p!r}")
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df: expected an int >= 1, got {df!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):   # bisection to float precision: the CDF is monotone
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof = 1) and the 95 % Student-t CI of n values.

    ``half_width`` = t_{0.975, n-1} · std / √n; ``low``/``high`` = mean ∓ half_width. With n = 1,
    ``std``, ``half_width``, ``low`` and ``high`` are NaN (one value has no spread).
    """

    n: int
    mean: float
    std: float
    half_width: float
    low: float
    high: float

    def as_dict(self) -> dict:
        """JSON-ready: NaN as None."""
        return {key: (None if isinstance(value, float) and math.isnan(value) else value)
                for key, value in self.__dict__.items()}


def summarize(values: Sequence[float]) -> Summary:
    """:class:`Summary` of ``values`` (at least one finite number).

    Raises:
        ValueError naming ``values`` when empty or not finite.
    """
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"values: expected at least one finite number, got {values}")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        nan = float("nan")
        return Summary(1, mean, nan, nan, nan, nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + _LEVEL / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, half, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    """Paired differences ``claimed[s] − baseline[s]`` over the seeds ``seeds`` both have, and their
    :class:`Summary`."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    summary: Summary


def paired(claimed: Mapping[int, float], baseline: Mapping[int, float]) -> Paired:
    """The paired differences of two variants' values by seed (seed -> value), on the seeds both have.

    Raises:
        ValueError when the two share no seed.
    """
    seeds = tuple(sorted(set(claimed) & set(baseline)))
    if not seeds:
        raise ValueError(f"claimed, baseline: no seed in common (claimed: {sorted(claimed)}, "
                         f"baseline: {sorted(baseline)})")
    differences = tuple(float(claimed[s]) - float(baseline[s]) for s in seeds)
    return Paired(seeds, differences, summarize(differences))


def verdict(difference: Summary, direction: str, margin: float = 0.0) -> str:
    """The verdict of a claim (module docstring) from the :class:`Summary` of its oriented paired
    differences (positive = the claimed variant is better).

    Args:
        direction: ``">"`` (better) or ``">="`` (not worse by more than ``margin``).
        margin: >= 0; 0 with ``">"``.
    Raises:
        ValueError naming ``direction`` or ``margin``.
    """
    if direction not in (">", ">="):
        raise ValueError(f"direction: expected '>' or '>=', got {direction!r}")
    if not (math.isfinite(margin) and margin >= 0) or (direction == ">" and margin != 0):
        raise ValueError(f"margin: expected a number >= 0 (0 with '>'), got {margin!r}")
    threshold = 0.0 if direction == ">" else -margin
    if difference.mean <= threshold:
        return VERDICTS[2]
    if difference.n > 1 and difference.low > threshold:
        return VERDICTS[0]
    return VERDICTS[1]
