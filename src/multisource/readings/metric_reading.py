"""What the metrics can say about the Fisher and count-based predictions (chapters 5-6).

Two questions a ratio test alone cannot answer. Can the metric tell the two predictions apart
at all? Under Hellinger both are close, and a test that rejects neither says nothing when they
are closer together than the smallest difference the design detects. And is agreement of a
ratio first-order behaviour, or cancellation? A ratio can match its first-order prediction
while each estimator's risk is far from its own; `first_order_excess` measures each risk
against its prediction (per estimator, paired over seeds) so that this can be seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multisource.readings.sweep_stats import ratio_interval

NAMES = {"tv": "TV", "hellinger": "Hellinger", "sqrt_kl": "√KL"}


def first_order_excess(frame: pd.DataFrame, config: Any, level: float = 0.95
                       ) -> dict[tuple[str, str], tuple[float, float, float]]:
    """At the default setting, per (metric, estimator): mean measured risk over mean
    first-order (Fisher) prediction, with its Student-t interval over seeds (each seed's
    measured and predicted risk paired; the delta method of `ratio_interval`)."""
    at = frame[(config.K_default == frame.K) & (frame.n == config.n_default)
               & np.isclose(frame.beta_sim, config.beta_default)]
    out = {}
    for metric in NAMES:
        for name in ("multi", "single"):
            out[(metric, name)] = ratio_interval(at[f"{metric}_{name}"].to_numpy(),
                                                 at[f"fisher_{metric}_{name}"].to_numpy(),
                                                 level)
    return out


def _excess_words(metric: str, excess: dict[tuple[str, str], tuple[float, float, float]],
                  rejects_fisher: bool) -> str:
    (m, m_lo, m_hi), (s, s_lo, s_hi) = excess[(metric, "multi")], excess[(metric, "single")]
    off = [lo > 1 or hi < 1 for lo, hi in ((m_lo, m_hi), (s_lo, s_hi))]
    values = (f"Each estimator's mean {NAMES[metric]} risk is {m:.2f} [{m_lo:.2f}, {m_hi:.2f}] "
              f"(multi) and {s:.2f} [{s_lo:.2f}, {s_hi:.2f}] (single) times its first-order "
              f"prediction")
    if all(off) and (m > 1) == (s > 1) and not rejects_fisher:
        return (f"{values}: neither risk is at its first-order value, "
                f"and the ratio agrees with its prediction because the two departures cancel.")
    if all(off):
        return f"{values}: neither risk is at its first-order value."
    if any(off):
        which = "multi" if off[0] else "single"
        return (f"{values}: only the {which}-source risk departs from its "
                f"first-order value.")
    return (f"{values}: both intervals contain 1, so the agreement is "
            f"first-order behaviour at this design's precision.")


def metric_reading(numbers: dict[str, Any],
                   excess: dict[tuple[str, str], tuple[float, float, float]]) -> str:
    """The chapter's sentence on the metrics at the default setting: whether Hellinger can
    separate the Fisher and count-based predictions (their distance against the minimum
    detectable effect), how √KL, which shares Hellinger's first-order prediction, measures,
    and whether each metric's agreement is first-order behaviour or cancellation."""
    fisher = numbers["default_hellinger_fisher"]
    count = numbers["default_hellinger_count"]
    mde = numbers["default_hellinger_mde"]
    apart = abs(fisher - count)
    rejects = (bool(numbers["default_hellinger_fisher_rejects"]),
               bool(numbers["default_hellinger_count_rejects"]))
    if apart < mde:
        outcome = {(False, False): "that it rejects neither says nothing about which holds",
                   (True, True): "it rejects both",
                   (True, False): "that it rejects only the Fisher prediction is no evidence "
                                  "for the count-based ratio",
                   (False, True): "that it rejects only the count-based ratio is no evidence "
                                  "for the Fisher prediction"}[rejects]
        first = (f"Under Hellinger the Fisher prediction ({fisher:.3f}) and the count-based "
                 f"ratio ({count:.3f}) are {apart:.3f} apart, {apart / mde:.2f} of the smallest "
                 f"difference this design detects (MDE {mde:.3f}): its test cannot tell them "
                 f"apart, and {outcome}.")
    else:
        first = (f"Under Hellinger the Fisher prediction ({fisher:.3f}) and the count-based "
                 f"ratio ({count:.3f}) are {apart:.3f} apart, more than the MDE ({mde:.3f}), so "
                 f"its test can tell them apart.")
    second = (f"√KL has the same first-order ratio prediction as Hellinger "
              f"({numbers['default_sqrt_kl_fisher']:.3f}) and measures "
              f"{numbers['default_sqrt_kl_ratio']:.3f} against Hellinger's "
              f"{numbers['default_hellinger_ratio']:.3f}.")
    rest = [_excess_words(metric, excess, bool(numbers[f"default_{metric}_fisher_rejects"]))
            for metric in ("hellinger", "sqrt_kl")]
    return " ".join([first, second, *rest])
