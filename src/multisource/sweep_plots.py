"""Figures of a Figure-1 sweep (chapters 5-6): risks along the three sweeps, and the measured
multi/single ratio against the Fisher-information prediction and the count-based ratio."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from multisource.plotting import ESTIMATOR_PALETTE, THEORY_COLOR, band, panel_grid

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
