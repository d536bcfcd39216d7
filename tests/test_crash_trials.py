"""A slice of bench/crash_trials.py: one `score` killed with SIGKILL part-way and rerun loses and duplicates nothing."""

from __future__ import annotations

import random

import pytest

from bench import crash_trials

pytestmark = pytest.mark.slow


def test_a_killed_score_run_loses_and_duplicates_nothing(use_champion, prefect_api, tmp_path):
    if not crash_trials.GENRES_DIR.is_dir():
        pytest.skip(f"real data not found at {crash_trials.GENRES_DIR}")
    _, template = crash_trials.build_inputs(tmp_path, tracks_per_genre=1)
    env = crash_trials.environment(tmp_path, None) | {
        "MLFLOW_TRACKING_URI": use_champion,
        "PREFECT_API_URL": prefect_api,
    }
    env["MLFLOW_REGISTRY_URI"] = use_champion
    ctx = {"root": tmp_path, "env": env, "uncertain_below": 0.2}
    counts = crash_trials.score_trials(ctx, template, 1, random.Random(0))
    assert counts["trials"] == 1
    assert {k: counts[k] for k in ("lost", "duplicated", "rescored", "mismatched", "changed")} == dict.fromkeys(
        ("lost", "duplicated", "rescored", "mismatched", "changed"), 0
    )
