"""The metric reading: whether Hellinger can separate the predictions, and whether a ratio's
agreement with its prediction is first-order behaviour or cancellation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from multisource.readings.metric_reading import first_order_excess, metric_reading

CONFIG = SimpleNamespace(K_default=3, n_default=100, beta_default=0.5)


def _frame(excess_multi: float, excess_single: float, seeds: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"K": 3, "n": 100, "beta_sim": 0.5}, index=range(seeds))
    for metric in ("tv", "hellinger", "sqrt_kl"):
        for name, excess in (("multi", excess_multi), ("single", excess_single)):
            predicted = 0.1 + 0.01 * rng.standard_normal(seeds)
            frame[f"fisher_{metric}_{name}"] = predicted
            frame[f"{metric}_{name}"] = excess * predicted * (1 + 0.02 * rng.standard_normal(
                seeds))
    return frame


def _numbers(fisher: float, count: float, mde: float, rejects: bool) -> dict:
    out = {}
    for metric in ("tv", "hellinger", "sqrt_kl"):
        out.update({f"default_{metric}_fisher": fisher, f"default_{metric}_count": count,
                    f"default_{metric}_mde": mde, f"default_{metric}_ratio": fisher,
                    f"default_{metric}_fisher_rejects": rejects,
                    f"default_{metric}_count_rejects": rejects})
    return out


def test_excess_recovers_a_known_departure_and_its_absence():
    far = first_order_excess(_frame(1.3, 1.3), CONFIG)
    lo, hi = far[("hellinger", "multi")][1:]
    assert lo > 1.2 and hi < 1.4
    near = first_order_excess(_frame(1.0, 1.0), CONFIG)
    lo, hi = near[("sqrt_kl", "single")][1:]
    assert lo < 1.0 < hi


def test_hellinger_that_cannot_separate_the_predictions_says_so():
    text = metric_reading(_numbers(0.773, 0.775, 0.038, False),
                          first_order_excess(_frame(1.0, 1.0), CONFIG))
    assert "cannot tell them apart" in text and "says nothing" in text
    assert "rejects both" in metric_reading(_numbers(0.773, 0.775, 0.038, True),
                                            first_order_excess(_frame(1.0, 1.0), CONFIG))
    assert "first-order behaviour" in text and "cancel" not in text
    text = metric_reading(_numbers(0.70, 0.80, 0.038, False),
                          first_order_excess(_frame(1.0, 1.0), CONFIG))
    assert "can tell them apart" in text and "cannot" not in text


def test_agreement_with_both_risks_off_is_called_cancellation_only_when_not_rejected():
    excess = first_order_excess(_frame(1.3, 1.3), CONFIG)
    assert "cancel" in metric_reading(_numbers(0.77, 0.78, 0.04, False), excess)
    assert "cancel" not in metric_reading(_numbers(0.77, 0.78, 0.04, True), excess)
    one_sided = first_order_excess(_frame(1.0, 1.3), CONFIG)
    assert "only the single-source risk" in metric_reading(_numbers(0.77, 0.78, 0.04, False),
                                                           one_sided)
