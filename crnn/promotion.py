"""Champion/challenger promotion as a pure decision over gathered evidence (no registry access here).

The registry adapter (``infra.registry``) gathers :class:`ChampionEvidence` about the version holding
the ``champion`` alias, step by step as :func:`needs_split_table` and :func:`needs_rescore` ask for
it, and applies :func:`decide`'s :class:`Decision`. The rule: a challenger is promoted when there is
no champion, or when its test track accuracy *beats* (ties do not) the champion's on the same test
tracks; a champion that cannot be compared fairly is kept, and the reason says why.
"""

from __future__ import annotations

from dataclasses import dataclass

SELECTION_METRIC = "test/track_accuracy"
"""The score compared, a fraction in [0, 1]."""


@dataclass(frozen=True)
class Challenger:
    """The newly registered version.

    Attributes:
        version: its registry version.
        score: its :data:`SELECTION_METRIC` on its own test split, in [0, 1].
        split_digest: digest of that test split (track ids and audio SHA-256).
        test_tracks: audio SHA-256 of each test track, one per track (equal audio gives equal entries).
        labels: the class names it predicts, in output order.
    """

    version: str
    score: float
    split_digest: str
    test_tracks: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ChampionEvidence:
    """What is known about the current champion, relative to the challenger's test split.

    Attributes:
        version: its registry version.
        labels: the class names it predicts, in output order.
        split_digest: digest of the test split its score was recorded on (``None``: not recorded).
        recorded_score: its recorded :data:`SELECTION_METRIC` (``None``: not recorded).
        trained_on: audio SHA-256 of its train and val tracks; ``None`` when it has no logged split table.
            Consulted only when :func:`needs_split_table` says so.
        rescored: ``(challenger, champion)`` accuracy, both re-scored on the challenger's test split
            through the served model; gathered only when :func:`needs_rescore` says so.
        rescore_error: why re-scoring failed (``"<exception type>: <message>"``), else ``None``.
    """

    version: str
    labels: tuple[str, ...]
    split_digest: str | None = None
    recorded_score: float | None = None
    trained_on: frozenset[str] | None = None
    rescored: tuple[float, float] | None = None
    rescore_error: str | None = None


@dataclass(frozen=True)
class Decision:
    """Outcome of champion/challenger: the new version, whether it was promoted, and why."""

    version: str
    promoted: bool
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    reason: str


def recorded_on_same_split(challenger: Challenger, champion: ChampionEvidence) -> bool:
    """True when the champion's recorded score was measured on the challenger's test split."""
    return champion.split_digest == challenger.split_digest and champion.recorded_score is not None


def needs_split_table(challenger: Challenger, champion: ChampionEvidence) -> bool:
    """True when :func:`decide` needs ``champion.trained_on`` (same labels, but another test split)."""
    return champion.labels == challenger.labels and not recorded_on_same_split(challenger, champion)


def needs_rescore(challenger: Challenger, champion: ChampionEvidence) -> bool:
    """True when :func:`decide` needs ``champion.rescored``: comparable only by re-scoring both models."""
    return (
        needs_split_table(challenger, champion)
        and champion.trained_on is not None
        and not champion.trained_on & set(challenger.test_tracks)
        and champion.rescored is None
        and champion.rescore_error is None
    )


def _not_comparable(challenger: Challenger, champion: ChampionEvidence) -> str | None:
    """Why the two cannot be compared fairly, or ``None`` when they can."""
    v = champion.version
    if champion.labels != challenger.labels:
        return f"champion v{v} predicts other labels ({', '.join(champion.labels)}), so it cannot be compared"
    if recorded_on_same_split(challenger, champion):
        return None
    if champion.trained_on is None:
        return f"champion v{v} has no logged split table, so it cannot be compared"
    overlap = len(champion.trained_on & set(challenger.test_tracks))
    if overlap:
        return f"champion v{v} trained or validated on {overlap} of the {len(challenger.test_tracks)} test tracks"
    if champion.rescore_error is not None:
        return f"champion v{v} could not be re-scored ({champion.rescore_error})"
    if champion.rescored is None:
        raise ValueError(f"champion v{v}: re-scoring is needed first (see needs_rescore)")
    return None


def first_champion_reason(version: str) -> str:
    """Why ``version`` was promoted with no champion to compare against.

    It is the model's first version, or no version held the alias (it was removed by hand).
    """
    if version == "1":
        return "v1 is the first version: promoted to champion"
    return f"promoted to champion: no version held the champion alias before v{version}"


def decide(challenger: Challenger, champion: ChampionEvidence | None) -> Decision:
    """Whether ``challenger`` takes the ``champion`` alias, and why.

    Args:
        challenger: the new version and its own test score.
        champion: evidence about the current champion; ``None`` when there is none.

    Returns:
        The decision; ``challenger_score`` and ``champion_score`` are the two figures compared
        (``champion_score`` is ``None`` when there was nothing to compare).

    Raises:
        ValueError: the evidence is incomplete (:func:`needs_rescore` is true).
    """
    if champion is None:
        return Decision(
            challenger.version, True, challenger.score, None, None, first_champion_reason(challenger.version)
        )
    why_not = _not_comparable(challenger, champion)
    if why_not is not None:
        return Decision(
            challenger.version, False, challenger.score, champion.version, None, f"champion kept: {why_not}"
        )
    if recorded_on_same_split(challenger, champion):
        mine, theirs, how = challenger.score, champion.recorded_score, "recorded on the same test split"
    else:
        (mine, theirs), how = champion.rescored, "both re-scored on this test split through the served model"
    verdict = "beats" if mine > theirs else "does not beat"
    reason = f"{SELECTION_METRIC} {mine:.4f} {verdict} champion v{champion.version}'s {theirs:.4f} ({how})"
    return Decision(challenger.version, mine > theirs, mine, champion.version, theirs, reason)
