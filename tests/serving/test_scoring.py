"""The plain scoring function of the service: who answers each order under each rollout, with
which score, and which model scores it in the shadow."""

import numpy as np
import pytest

from lakehouse_assets.serving.scoring import (
    LoadedModel,
    Rollout,
    Scored,
    ScoringInput,
    Unscorable,
    canary_bucket,
    score_requests,
)


def model(version: int, offset: float) -> LoadedModel:
    """A model whose score is the row's ``x`` plus ``offset`` (so the scorer is visible)."""
    return LoadedModel(
        "m", version, model=None, compiled=lambda rows: np.array([r["x"] + offset for r in rows])
    )


CHAMPION, CHALLENGER = model(1, 0.0), model(2, 0.5)
CUSTOMERS = list(range(1, 201))
INPUTS = [ScoringInput({"x": c / 1000}, {}) for c in CUSTOMERS]


def test_champion_mode_scores_with_the_champion_only():
    scored = score_requests(INPUTS, CUSTOMERS, CHAMPION, CHALLENGER, Rollout("champion"))
    assert all(isinstance(s, Scored) and s.served_by == "champion" and s.shadow is None for s in scored)
    assert [s.score for s in scored] == pytest.approx([c / 1000 for c in CUSTOMERS])


def test_shadow_mode_answers_with_the_champion_and_names_the_challenger_as_shadow():
    scored = score_requests(INPUTS, CUSTOMERS, CHAMPION, CHALLENGER, Rollout("shadow"))
    assert {(s.served_by, s.model.version, s.shadow.version) for s in scored} == {("champion", 1, 2)}


def test_canary_answers_exactly_the_customers_below_the_share_with_the_challenger():
    scored = score_requests(INPUTS, CUSTOMERS, CHAMPION, CHALLENGER, Rollout("canary", 0.3))
    for customer, s in zip(CUSTOMERS, scored, strict=True):
        canary = canary_bucket(customer) < 0.3
        assert s.served_by == ("challenger" if canary else "champion")
        assert s.score == pytest.approx(customer / 1000 + (0.5 if canary else 0.0))
        assert s.shadow is (CHAMPION if canary else CHALLENGER)
    assert 0.15 < sum(s.served_by == "challenger" for s in scored) / len(scored) < 0.45


def test_no_challenger_or_the_same_version_means_the_champion_alone():
    for challenger in (None, model(1, 0.5)):
        scored = score_requests(INPUTS, CUSTOMERS, CHAMPION, challenger, Rollout("canary", 1.0))
        assert {(s.served_by, s.shadow) for s in scored} == {("champion", None)}


def test_unscorable_orders_pass_through_in_place_and_are_not_scored():
    calls = []

    def counting(rows):
        calls.append(len(rows))
        return np.zeros(len(rows))

    found = [INPUTS[0], Unscorable("unknown customer 9"), INPUTS[2]]
    scored = score_requests(found, CUSTOMERS[:3], LoadedModel("m", 1, None, counting), None, Rollout())
    assert scored[1] == Unscorable("unknown customer 9")
    assert isinstance(scored[0], Scored) and isinstance(scored[2], Scored)
    assert calls == [2]  # one model call for the batch, without the unscorable order
