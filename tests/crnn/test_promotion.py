"""The champion/challenger rule without a registry: every branch of :func:`crnn.promotion.decide`."""

from __future__ import annotations

import pytest

from crnn.promotion import (
    Challenger,
    ChampionEvidence,
    decide,
    needs_rescore,
    needs_split_table,
)

LABELS = ("blues", "rock")
NEW = Challenger("5", 0.7, "digest-a", ("s1", "s2", "s3", "s3"), LABELS)


def champ(**kw) -> ChampionEvidence:
    return ChampionEvidence(**{"version": "2", "labels": LABELS, **kw})


def test_no_champion_promotes() -> None:
    d = decide(NEW, None)
    assert (d.version, d.promoted, d.challenger_score, d.champion_version, d.champion_score) == (
        "5",
        True,
        0.7,
        None,
        None,
    )
    assert d.reason == "promoted to champion: no version held the champion alias before v5"
    assert decide(Challenger("1", 0.7, "digest-a", (), LABELS), None).reason == (
        "v1 is the first version: promoted to champion"
    )


@pytest.mark.parametrize(
    ("theirs", "promoted", "verdict"),
    [(0.6, True, "beats"), (0.7, False, "does not beat"), (0.8, False, "does not beat")],
)
def test_same_split_compares_recorded_scores_and_a_tie_keeps_the_champion(theirs, promoted, verdict) -> None:
    ev = champ(split_digest="digest-a", recorded_score=theirs)
    assert not needs_split_table(NEW, ev) and not needs_rescore(NEW, ev)
    d = decide(NEW, ev)
    assert (d.promoted, d.challenger_score, d.champion_version, d.champion_score) == (promoted, 0.7, "2", theirs)
    assert (
        d.reason == f"test/track_accuracy 0.7000 {verdict} champion v2's {theirs:.4f} (recorded on the same test split)"
    )


def test_same_digest_without_a_recorded_score_is_another_split() -> None:
    assert needs_split_table(NEW, champ(split_digest="digest-a"))


def test_other_labels_are_not_comparable_and_need_no_more_evidence() -> None:
    ev = champ(labels=("a", "b", "c"), split_digest="digest-a", recorded_score=0.1)
    assert not needs_split_table(NEW, ev) and not needs_rescore(NEW, ev)
    d = decide(NEW, ev)
    assert not d.promoted and d.champion_score is None and d.champion_version == "2"
    assert d.reason == "champion kept: champion v2 predicts other labels (a, b, c), so it cannot be compared"


def test_no_split_table_keeps_the_champion() -> None:
    ev = champ(split_digest="other", recorded_score=0.1)
    assert needs_split_table(NEW, ev) and not needs_rescore(NEW, ev)
    d = decide(NEW, ev)
    assert not d.promoted and d.champion_score is None
    assert d.reason == "champion kept: champion v2 has no logged split table, so it cannot be compared"


def test_a_champion_that_saw_test_tracks_is_kept() -> None:
    ev = champ(trained_on=frozenset({"s1", "s3", "x"}))
    assert not needs_rescore(NEW, ev)
    d = decide(NEW, ev)
    assert not d.promoted and d.challenger_score == 0.7
    assert d.reason == "champion kept: champion v2 trained or validated on 2 of the 4 test tracks"


def test_unseen_tracks_are_rescored_and_the_rescored_figures_decide() -> None:
    ev = champ(trained_on=frozenset({"x"}))
    assert needs_rescore(NEW, ev)
    with pytest.raises(ValueError, match="re-scoring is needed first"):
        decide(NEW, ev)
    tie = decide(NEW, champ(trained_on=frozenset({"x"}), rescored=(0.5, 0.5)))
    assert (tie.promoted, tie.challenger_score, tie.champion_score) == (False, 0.5, 0.5)
    assert tie.reason == (
        "test/track_accuracy 0.5000 does not beat champion v2's 0.5000 "
        "(both re-scored on this test split through the served model)"
    )
    better = decide(NEW, champ(trained_on=frozenset(), rescored=(0.6, 0.5)))
    assert better.promoted and better.challenger_score == 0.6 and "0.6000 beats champion v2's 0.5000" in better.reason


def test_a_champion_that_cannot_be_rescored_is_kept() -> None:
    ev = champ(trained_on=frozenset(), rescore_error="OSError: gone")
    assert not needs_rescore(NEW, ev)
    d = decide(NEW, ev)
    assert not d.promoted and d.reason == "champion kept: champion v2 could not be re-scored (OSError: gone)"
