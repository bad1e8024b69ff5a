"""One seaborn theme and the colours every chapter uses for the two estimators."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

MULTI_COLOR = "#1b6ca8"   # multi-source: one model on all K sources
SINGLE_COLOR = "#d1495b"  # single-source: K separate models
THEORY_COLOR = "#4a4a4a"
ESTIMATOR_PALETTE = {"multi": MULTI_COLOR, "single": SINGLE_COLOR}
ESTIMATOR_LABELS = {"multi": "multi-source", "single": "single-source"}


def set_theme() -> None:
    """Apply the book's plotting theme (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95,
                  rc={"figure.dpi": 110, "savefig.dpi": 110, "axes.titleweight": "bold",
                      "axes.spines.top": False, "axes.spines.right": False,
                      "legend.frameon": False})


def panel_grid(ncols: int, *, width: float = 4.2, height: float = 3.4,
               sharey: bool = False) -> tuple[plt.Figure, list[plt.Axes]]:
    """A one-row figure of `ncols` panels sized for the book's page width."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), sharey=sharey,
                             squeeze=False, layout="constrained")
    return fig, list(axes[0])


def band(ax: plt.Axes, x, mean, low, high, *, estimator: str, label: str | None = None,
         marker: str = "o") -> None:
    """Plot a mean curve with a shaded interval in the estimator's colour."""
    color = ESTIMATOR_PALETTE[estimator]
    ax.plot(x, mean, marker=marker, color=color, label=label or ESTIMATOR_LABELS[estimator])
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
