"""The scorecard reads its verdicts from the stored tables: mutate a stored difference and the
row and the glued summary sentence change with it."""

from __future__ import annotations

import pandas as pd
import pytest

from multisource.readings import chapter56_verdicts, scorecard
from multisource.readings.stored import current_table


@pytest.fixture(scope="module")
def gaussian() -> pd.DataFrame:
    return current_table("gaussian")


@pytest.fixture(scope="module")
def autoregressive() -> pd.DataFrame:
    return chapter56_verdicts.load(5)


def _card(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(scorecard.COLUMNS))


def test_a_worse_multi_source_fit_turns_the_verdict_and_the_summary(autoregressive) -> None:
    before = _card(scorecard.network_rows(autoregressive, 5))
    mutated = autoregressive.copy()
    K0, n0, beta0 = scorecard._default(mutated)
    default = (mutated.K == K0) & (mutated.n == n0) & (mutated.beta_sim == beta0)
    mutated.loc[default, "tv_multi"] = mutated.loc[default, "tv_single"] * 1.2
    after = _card(scorecard.network_rows(mutated, 5))

    def beats_tv(card: pd.DataFrame) -> str:
        return card[(card.claim == "beats") & (card.metric == "TV")].outcome.item()

    assert beats_tv(before) == "supported"
    assert beats_tv(after) == "contradicted"
    assert "contradicted in neural AR (TV)" in scorecard.claim_summary(after, "beats")
    assert "contradicted" not in scorecard.claim_summary(before, "beats")


def test_exact_rows_follow_the_exact_risks(gaussian) -> None:
    before = _card(scorecard.gaussian_rows(gaussian))
    mutated = gaussian.copy()
    k_sweep = mutated.sweep == "K"
    mutated.loc[k_sweep & (mutated.K == 15), "exact_ratio"] = 0.99
    after = _card(scorecard.gaussian_rows(mutated))
    outcome = {c: card[card.claim == "grows_with_K"].outcome.item() for c, card in
               (("before", before), ("after", after))}
    assert outcome == {"before": "supported (exact)", "after": "contradicted (exact)"}


def test_the_explicit_bound_row_fails_when_the_exact_risk_exceeds_it(gaussian) -> None:
    assert scorecard.theorem_rows(gaussian)[0]["outcome"] == "supported (exact)"
    mutated = gaussian.copy()
    mutated.loc[mutated.index[0], "exact_single"] = 1.5   # no TV risk can be above 1
    assert scorecard.theorem_rows(mutated)[0]["outcome"] == "contradicted (exact)"


def test_summary_names_every_outcome_and_chapter() -> None:
    card = _card([scorecard._row("beats", 5, "tv", "", "supported", ""),
                  scorecard._row("beats", 7, "fcd", "anchor", "not detected", ""),
                  scorecard._row("beats", 7, "accuracy", "anchor", "contradicted", "")])
    assert scorecard.claim_summary(card, "beats") == (
        "supported in neural AR (TV); contradicted in EDM2 miniature (class accuracy); "
        "not detected in EDM2 miniature (FCD)")
    assert scorecard.claim_summary(card, "grows_with_K") == "not tested"


def test_the_default_setting_is_found_with_equal_seeds_everywhere() -> None:
    settings = ([(K, 5000, 0.5) for K in (3, 5, 10, 15)] + [(5, n, 0.5) for n in (1000, 20000)]
                + [(5, 5000, b) for b in (0.25, 0.75, 1.0)])
    frame = pd.DataFrame([{"K": K, "n": n, "beta_sim": b, "seed": s}
                          for K, n, b in settings for s in range(20)])
    assert scorecard._default(frame) == (5, 5000, 0.5)


def test_similarity_axis_rows_follow_the_planted_slope_and_say_when_interim() -> None:
    from tests.test_edm2_similarity import _axis_frame

    supported = _card(scorecard.similarity_rows(_axis_frame(slope=-0.1), 8))
    assert len(supported) == 2 * 3 * 2   # two slopes x three metrics x two scopes
    assert (supported.outcome == "supported").all()
    assert not supported.evidence.str.contains("interim").any()
    flat = _card(scorecard.similarity_rows(_axis_frame(slope=0.0, seeds=3), 8))
    assert (flat.outcome == "not detected").all()
    assert flat.evidence.str.contains("MDE").all()
    assert flat.evidence.str.contains("3 seeds; interim, 8 planned").all()
    assert scorecard.similarity_rows(_axis_frame(seeds=1), 8) == []
