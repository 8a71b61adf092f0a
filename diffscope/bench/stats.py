"""Benchmark statistics: pure numbers, no rendering.

Means and differences of means are computed exactly, as fractions of the scores (scores are whole
or short decimal numbers, so a mean like 7/3 stays 7/3), and rounded once, when shown: an
`Estimate` keeps its exact mean beside the float, and `exact_round` rounds it. Intervals are
t-based 95% (Welch for a difference of independent means) and are floats by nature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from pydantic import BaseModel

CONFIDENCE = 0.95
BASELINE = "blackbox"
"""The agent every other agent is compared with."""


def t_quantile(df: float) -> float:
    """The two-sided 95% critical value of Student's t with `df` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def as_fraction(value: float | int | str | Fraction) -> Fraction:
    """A score as an exact fraction: 4.5 is 9/2, 0.1 is 1/10 (the decimal the user meant)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(repr(value))  # the shortest decimal that round-trips, not the binary one
    return Fraction(value)


def exact_round(value: Fraction, places: int = 2) -> Fraction:
    """`value` rounded to `places` decimals, half away from zero (the one rounding of a number)."""
    scale = 10**places
    scaled = abs(value) * scale
    whole = math.floor(scaled + Fraction(1, 2))
    return Fraction(whole if value >= 0 else -whole, scale)


class Estimate(BaseModel):
    """A mean (or difference of means) with its 95% interval, or a note saying why there is none.

    `exact` is the mean as an exact fraction ("7/3"); `mean` is the same number as a float.
    """

    mean: float | None = None
    exact: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    sd: float | None = None
    n: int = 0
    note: str = ""

    @property
    def fraction(self) -> Fraction | None:
        """The exact mean (from `exact`, else from the float), or None when there is none."""
        if self.exact is not None:
            return Fraction(self.exact)
        return None if self.mean is None else as_fraction(self.mean)

    @property
    def half_width(self) -> float | None:
        """Half the interval's width, when there is an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


def _estimate(mean: Fraction, **kw: object) -> Estimate:
    return Estimate(mean=float(mean), exact=str(mean), **kw)


def exact_mean(values: Sequence[float | Fraction]) -> Fraction:
    """The exact mean of non-empty `values`."""
    return sum((as_fraction(v) for v in values), Fraction(0)) / len(values)


def _sd(values: Sequence[float | Fraction], mean: Fraction) -> float:
    """The sample standard deviation (exact sum of squares, one square root)."""
    squares = sum(((as_fraction(v) - mean) ** 2 for v in values), Fraction(0))
    return math.sqrt(squares / (len(values) - 1))


def mean_ci(values: Sequence[float | Fraction]) -> Estimate:
    """The mean of `values` with a t-based 95% interval (none for n < 2)."""
    n = len(values)
    if n == 0:
        return Estimate(n=0, note="no scores")
    mean = exact_mean(values)
    if n == 1:
        return _estimate(mean, n=1, note="n=1, no CI")
    sd = _sd(values, mean)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return _estimate(mean, ci_low=float(mean) - half, ci_high=float(mean) + half, sd=sd, n=n)


def diff_ci(values: Sequence[float], baseline: Sequence[float]) -> Estimate:
    """mean(values) - mean(baseline), exactly, with a Welch 95% interval (independent runs)."""
    na, nb = len(values), len(baseline)
    if na == 0 or nb == 0:
        note = "no scores on either side" if na == nb else "no scores on one side"
        return Estimate(n=0, note=note)
    diff = exact_mean(values) - exact_mean(baseline)
    if na < 2 and nb < 2:
        return _estimate(diff, n=1, note="n=1 on both sides, no CI")
    if na < 2 or nb < 2:
        return _estimate(diff, n=1, note="n=1 on one side, no CI")
    va = _sd(values, exact_mean(values)) ** 2 / na
    vb = _sd(baseline, exact_mean(baseline)) ** 2 / nb
    se = math.sqrt(va + vb)
    n = min(na, nb)
    if se == 0:
        return _estimate(diff, ci_low=float(diff), ci_high=float(diff), n=n, note="no spread")
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = t_quantile(df) * se
    return _estimate(diff, ci_low=float(diff) - half, ci_high=float(diff) + half, n=n)


def mean_of_estimates(estimates: Sequence[Estimate]) -> Estimate:
    """The mean of some estimates' exact means (e.g. per-organism differences), with a t interval
    over them; the note says when there are none or one."""
    means = [e.fraction for e in estimates if e.fraction is not None]
    estimate = mean_ci([m for m in means if m is not None])
    if estimate.n == 0:
        estimate.note = "no organism has scores on both sides"
    elif estimate.n == 1:
        estimate.note = "1 organism, no CI"
    return estimate
