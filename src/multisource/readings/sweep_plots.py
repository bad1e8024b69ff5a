"""Figures of a Figure-1 sweep (chapters 5-6): risks along the three sweeps, and the measured
multi/single ratio against the Fisher-information prediction and the count-based ratio."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from multisource.readings.plotting import ESTIMATOR_PALETTE, THEORY_COLOR, band, panel_grid
from multisource.readings.sweep_stats import MOST_LIKELY

AXIS_LABELS = {"K": "number of sources $K$", "n": "total sample size $n$",
               "beta_sim": r"shared fraction $\beta_{\mathrm{sim}}$"}
COUNT_LABEL = r"count-based $\sqrt{1-(K-1)\beta_{\mathrm{sim}}/K}$"
FISHER_COLOR = "#e08e0b"
FAMILY_MARKERS = {"neural AR": "o", "Ising": "s", "spin MLP energy": "^", "tabular AR": "D"}


def _log_axis(ax: plt.Axes, values: pd.Series) -> None:
    ax.set_xscale("log")
    ax.set_xticks(values, [str(int(v)) for v in values])
    ax.minorticks_off()


def risk_figure(parts: dict[str, pd.DataFrame], *, fisher: bool = False) -> plt.Figure:
    """Mean risk of both estimators along the three sweeps with 95% t bands over seeds; with
    `fisher`, the Fisher-information predictions as dotted lines."""
    fig, axes = panel_grid(3)
    for ax, (knob, part) in zip(axes, parts.items(), strict=True):
        for estimator in ("single", "multi"):
            band(ax, part[knob], part[estimator], part[f"{estimator}_lo"],
                 part[f"{estimator}_hi"], estimator=estimator)
            if fisher:
                ax.plot(part[knob], part[f"fisher_{estimator}"], ls=":", marker="x",
                        color=ESTIMATOR_PALETTE[estimator], label=f"Fisher, {estimator}")
        ax.set_xlabel(AXIS_LABELS[knob])
        ax.set_ylabel("exact average TV")
        if knob == "n":
            _log_axis(ax, part[knob])
    axes[0].legend(fontsize=8)
    return fig


def ratio_figure(parts: dict[str, pd.DataFrame], *, fisher: bool = False) -> plt.Figure:
    """Measured ratio of mean risks (95% t interval) along the three sweeps, the count-based
    ratio, and with `fisher` the Fisher-information prediction."""
    fig, axes = panel_grid(3, sharey=True)
    for ax, (knob, part) in zip(axes, parts.items(), strict=True):
        ax.errorbar(part[knob], part.ratio, yerr=[part.ratio - part.ratio_lo,
                                                   part.ratio_hi - part.ratio],
                    marker="o", color=ESTIMATOR_PALETTE["multi"], capsize=3,
                    label="measured: mean multi / mean single")
        if fisher:
            ax.plot(part[knob], part.fisher, ls="-", marker="x", color=FISHER_COLOR,
                    label="Fisher-information prediction")
        ax.plot(part[knob], part.theory, ls="--", marker="D", color=THEORY_COLOR,
                label=COUNT_LABEL)
        ax.set_xlabel(AXIS_LABELS[knob])
        if knob == "n":
            _log_axis(ax, part[knob])
    axes[0].set_ylabel("multi / single")
    axes[0].legend(loc="lower left", fontsize=8)
    return fig


def prediction_figure(summaries: dict[str, pd.DataFrame]) -> plt.Figure:
    """Measured ratio (95% t interval) against each prediction, one point per setting and family:
    left the Fisher-information prediction, right the count-based ratio; on the diagonal a
    prediction is exact."""
    fig, axes = panel_grid(2, width=4.6, height=4.2, sharey=True)
    for ax, column, title in ((axes[0], "fisher", "Fisher-information prediction"),
                              (axes[1], "theory", "count-based ratio")):
        lows, highs = [], []
        for family, summary in summaries.items():
            ax.errorbar(summary[column], summary.ratio,
                        yerr=[summary.ratio - summary.ratio_lo, summary.ratio_hi - summary.ratio],
                        fmt=FAMILY_MARKERS.get(family, "o"), capsize=2, label=family,
                        alpha=0.85, markersize=5)
            lows.append(min(summary[column].min(), summary.ratio_lo.min()))
            highs.append(max(summary[column].max(), summary.ratio_hi.max()))
        span = np.array([min(lows) - 0.02, min(max(highs) + 0.02, 1.1)])
        ax.plot(span, span, color=THEORY_COLOR, lw=1, ls="--")
        ax.set_xlabel(f"predicted ratio: {title}")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("measured multi / single")
    axes[0].legend(fontsize=8, loc="upper left")
    return fig


METRIC_LABELS = {"tv": "TV", "hellinger": "Hellinger", "sqrt_kl": r"$\sqrt{\mathrm{KL}}$"}


def wilks_figure(wilks: pd.DataFrame, alpha: float = 0.001) -> plt.Figure:
    """W / r of every fit (histogram per estimator) against the law of chi^2_r / r at the median
    rank (mean 1), with the old lower cut-off chi^2_r(alpha) / r."""
    from scipy.stats import chi2

    fig, axes = panel_grid(2, width=4.4, height=3.4, sharey=True)
    for ax, name in zip(axes, ("multi", "single"), strict=True):
        part = wilks[wilks.estimator == name]
        rank = float(part["rank"].median())
        ax.hist(part.w_over_r, bins=25, density=True, alpha=0.6,
                color=ESTIMATOR_PALETTE[name], label=f"{name}: W / r")
        grid = np.linspace(max(0.0, part.w_over_r.min() - 0.2), part.w_over_r.max() + 0.2, 300)
        ax.plot(grid, rank * chi2.pdf(grid * rank, rank), color=THEORY_COLOR,
                label=rf"$\chi^2_r/r$, $r={rank:.0f}$")
        ax.axvline(chi2.ppf(alpha, rank) / rank, color=THEORY_COLOR, ls=":",
                   label=rf"old cut-off $\chi^2_r({alpha})/r$")
        ax.set_xlabel(r"$W/r$")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("density")
    return fig


def budget_figure(curve: pd.DataFrame | None) -> plt.Figure:
    """The multi/single ratio of mean TV against a fixed budget of the random search (95% t
    intervals), with the restart rule's ratio on the same seeds as a band and the ratio of the
    most likely fits found (every search) as a dashed line."""
    fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    if curve is None:   # a profile without the budget study (fewer than two of its seeds)
        ax.text(0.5, 0.5, "no restart-budget study at this profile", ha="center",
                transform=ax.transAxes)
        return fig
    fixed = curve[~curve.starts.isin(["rule", MOST_LIKELY])]
    starts = fixed.starts.astype(int)
    ax.errorbar(starts, fixed.ratio, yerr=[fixed.ratio - fixed.ratio_lo,
                                           fixed.ratio_hi - fixed.ratio],
                marker="o", capsize=3, color=ESTIMATOR_PALETTE["multi"],
                label="fixed budget: first $B$ starts")
    rule = curve[curve.starts == "rule"].iloc[0]
    ax.axhspan(rule.ratio_lo, rule.ratio_hi, color=FISHER_COLOR, alpha=0.15)
    ax.axhline(rule.ratio, color=FISHER_COLOR, label="restart rule (same seeds)")
    mle = curve[curve.starts == MOST_LIKELY]
    if len(mle):
        ax.axhline(mle.ratio.iloc[0], color="black", linestyle="--",
                   label="most likely fit found (every search)")
    _log_axis(ax, starts)
    ax.set_xlabel("random starts per source network $B$")
    ax.set_ylabel("multi / single (mean TV)")
    ax.legend(fontsize=8)
    return fig


def metric_figure(defaults: dict[str, dict[str, float]]) -> plt.Figure:
    """At the default setting, the measured ratio under each metric (95% t interval) with its
    first-order Fisher prediction and the count-based ratio."""
    fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    names = list(defaults)
    x = np.arange(len(names))
    ratio = np.array([defaults[m]["ratio"] for m in names])
    lo = np.array([defaults[m]["lo"] for m in names])
    hi = np.array([defaults[m]["hi"] for m in names])
    ax.errorbar(x, ratio, yerr=[ratio - lo, hi - ratio], fmt="o", capsize=4,
                color=ESTIMATOR_PALETTE["multi"], label="measured")
    ax.plot(x, [defaults[m]["fisher"] for m in names], "x", color=FISHER_COLOR, ms=9,
            label="Fisher prediction (first order)")
    ax.axhline(defaults[names[0]]["count"], color=THEORY_COLOR, ls="--", label=COUNT_LABEL)
    ax.set_xticks(x, [METRIC_LABELS.get(m, m) for m in names])
    ax.set_ylabel("multi / single at the default setting")
    ax.legend(fontsize=8)
    return fig
