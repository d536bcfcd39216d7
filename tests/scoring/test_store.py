"""Tests for scoring.store: the SQLite state of a scored library and the rerun plan."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from scoring.library import LibraryFile
from scoring.store import FAILED, SCHEMA_VERSION, SCORED, STORE_NAME, LibraryStore, StoreError, plan

V1 = {"uri": "models:/genre-crnn@champion", "version": "v1"}
V2 = {"uri": "models:/genre-crnn@champion", "version": "v2"}
SCORED_ROW = {
    "status": SCORED,
    "genre": "jazz",
    "probability": 0.8125,
    "uncertain": False,
    "top_k": [{"genre": "jazz", "probability": 0.8125}, {"genre": "blues", "probability": 0.1}],
    "probs": {"jazz": 0.8125, "blues": 0.1},
    "timeline": [{"start_s": 0.0, "end_s": 2.995, "genre": "jazz", "probability": 0.8}],
    "duration_s": 4.2,
    "truncated": True,
    "n_segments": 2,
}


@pytest.fixture
def store(tmp_path: Path):
    with LibraryStore(tmp_path / "out" / STORE_NAME) as s:
        yield s


def local(name: str, size: int = 100, mtime_ns: int = 1_700_000_000_123_456_789) -> LibraryFile:
    return LibraryFile(f"/music/{name}", size, mtime_ns)


def test_record_and_results_round_trip(store: LibraryStore) -> None:
    f = local("a.mp3")
    store.record(f, "ab" * 32, V1, "run-1", SCORED_ROW)
    (row,) = store.results(model_version="v1")
    assert {k: row[k] for k in SCORED_ROW} == SCORED_ROW
    assert row["uncertain"] is False and row["truncated"] is True
    assert (row["path"], row["size"], row["mtime_ns"], row["etag"]) == (f.path, 100, 1_700_000_000_123_456_789, None)
    assert (row["sha256"], row["model_version"], row["model_uri"], row["run_id"]) == (
        "ab" * 32,
        "v1",
        V1["uri"],
        "run-1",
    )
    assert row["reason"] is None and row["tag_status"] is None
    assert row["scored_at"]


def test_failed_row_has_reason_and_nulls(store: LibraryStore) -> None:
    f = LibraryFile("s3://lib/x.mp3", 7, 5, "etag-1")
    store.record(f, None, V1, "run-1", {"status": FAILED, "reason": "cannot decode"})
    (row,) = store.results()
    assert (row["status"], row["reason"], row["etag"], row["sha256"]) == (FAILED, "cannot decode", "etag-1", None)
    assert all(row[k] is None for k in ("genre", "uncertain", "truncated", "top_k", "probs", "timeline", "n_segments"))


def test_record_rejects_unknown_status(store: LibraryStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.record(local("a.mp3"), None, V1, "r", {"status": "maybe"})


def test_rows_are_keyed_by_path_and_model_version(store: LibraryStore) -> None:
    f = local("a.mp3")
    store.record(f, None, V1, "run-1", SCORED_ROW)
    store.record(f, None, V2, "run-2", SCORED_ROW | {"genre": "rock"})
    store.record(f, None, V1, "run-3", SCORED_ROW | {"genre": "pop"})  # replaces the v1 row
    assert [(r["model_version"], r["genre"], r["run_id"]) for r in store.results(model_version="v1")] == [
        ("v1", "pop", "run-3")
    ]
    assert [r["genre"] for r in store.results(model_version="v2")] == ["rock"]
    assert len(store.results()) == 2
    assert store.results(run_id="run-1") == []
    assert [r["model_version"] for r in store.results(run_id="run-2")] == ["v2"]
    assert store.results(model_version="v2", run_id="run-3") == []
    assert set(store.identities("v1")) == {f.path} and set(store.identities("v3")) == set()


def test_results_sorted_by_path(store: LibraryStore) -> None:
    for name in ["c.mp3", "a.mp3", "b.mp3"]:
        store.record(local(name), None, V1, "r", {"status": FAILED, "reason": "x"})
    assert [r["path"] for r in store.results(run_id="r")] == ["/music/a.mp3", "/music/b.mp3", "/music/c.mp3"]


def test_store_persists_across_connections(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    with LibraryStore(path) as s:
        s.record(local("a.mp3"), "h", V1, "r", SCORED_ROW)
    with LibraryStore(path) as s:
        assert [r["genre"] for r in s.results()] == ["jazz"]


# --- plan ------------------------------------------------------------------------------------------


def test_plan_new_file_is_todo_without_hint(store: LibraryStore) -> None:
    f = local("new.mp3")
    todo, unchanged = plan([f], store.identities("v1"))
    assert (todo, unchanged) == ([f.to_dict()], 0)


def test_plan_same_size_and_mtime_is_unchanged(store: LibraryStore) -> None:
    f = local("a.mp3")
    store.record(f, "h1", V1, "r", SCORED_ROW)
    assert plan([f], store.identities("v1")) == ([], 1)
    # a new model version knows nothing yet
    assert plan([f], store.identities("v2")) == ([f.to_dict()], 0)


@pytest.mark.parametrize("change", [{"mtime_ns": 1}, {"size": 101}])
def test_plan_changed_identity_is_todo_with_hint(store: LibraryStore, change: dict) -> None:
    f = local("a.mp3")
    store.record(f, "h1", V1, "r", SCORED_ROW)
    moved = LibraryFile(**(f.to_dict() | change))
    todo, unchanged = plan([moved], store.identities("v1"))
    assert unchanged == 0
    assert todo == [moved.to_dict() | {"known_sha256": "h1", "known_etag": None}]


def test_plan_failed_file_is_retried_only_when_asked(store: LibraryStore) -> None:
    f = local("bad.mp3")
    store.record(f, "hbad", V1, "r", {"status": FAILED, "reason": "cannot decode"})
    known = store.identities("v1")
    assert plan([f], known) == ([], 1)
    todo, unchanged = plan([f], known, retry_failed=True)
    assert (todo, unchanged) == ([f.to_dict()], 0)  # no hint: the stored hash must not short-cut the retry


def test_plan_retry_failed_leaves_scored_files_alone(store: LibraryStore) -> None:
    ok, bad = local("ok.mp3"), local("bad.mp3")
    store.record(ok, "h", V1, "r", SCORED_ROW)
    store.record(bad, "h2", V1, "r", {"status": FAILED, "reason": "x"})
    todo, unchanged = plan([bad, ok], store.identities("v1"), retry_failed=True)
    assert ([t["path"] for t in todo], unchanged) == ([bad.path], 1)


def test_plan_s3_uses_etag_not_mtime(store: LibraryStore) -> None:
    f = LibraryFile("s3://lib/a.mp3", 10, 1000, "etag-1")
    store.record(f, "h1", V1, "r", SCORED_ROW)
    known = store.identities("v1")
    assert plan([LibraryFile(f.path, 10, 999_999, "etag-1")], known) == ([], 1)  # re-uploaded, same content
    changed = LibraryFile(f.path, 10, 1000, "etag-2")
    assert plan([changed], known) == ([changed.to_dict() | {"known_sha256": "h1", "known_etag": "etag-1"}], 0)


def test_plan_mixed_counts(store: LibraryStore) -> None:
    files = [local(f"{i}.mp3") for i in range(5)]
    for f in files[:3]:
        store.record(f, None, V1, "r", SCORED_ROW)
    files[0] = LibraryFile(files[0].path, 1, files[0].mtime_ns)
    todo, unchanged = plan(files, store.identities("v1"))
    assert ([t["path"] for t in todo], unchanged) == ([files[0].path, files[3].path, files[4].path], 2)


# --- identity, tags, runs --------------------------------------------------------------------


def test_update_identity_makes_file_unchanged(store: LibraryStore) -> None:
    f = local("a.mp3")
    store.record(f, "h1", V1, "run-1", SCORED_ROW)
    store.record(f, "h1", V2, "run-1", SCORED_ROW)
    touched = LibraryFile(f.path, 120, f.mtime_ns + 5)
    store.update_identity(f.path, "v1", 120, f.mtime_ns + 5, None)  # None keeps the stored hash
    (row,) = store.results(model_version="v1")
    assert (row["size"], row["mtime_ns"], row["sha256"], row["genre"]) == (120, f.mtime_ns + 5, "h1", "jazz")
    assert plan([touched], store.identities("v1")) == ([], 1)
    assert store.results(model_version="v2")[0]["size"] == 100  # other versions untouched
    store.update_identity(f.path, "v1", 120, f.mtime_ns + 5, "h2")
    assert store.results(model_version="v1")[0]["sha256"] == "h2"


def test_set_tag_status(store: LibraryStore) -> None:
    store.record(local("a.mp3"), None, V1, "r", SCORED_ROW)
    store.set_tag_status("/music/a.mp3", "v1", "written: Jazz")
    assert store.results()[0]["tag_status"] == "written: Jazz"


def test_start_and_finish_run(store: LibraryStore) -> None:
    store.start_run("run-1", V1["uri"], "v1", ["/music", "s3://lib/music"], 42)
    raw = sqlite3.connect(store.path)
    raw.row_factory = sqlite3.Row
    (run,) = raw.execute("SELECT * FROM runs").fetchall()
    assert (run["run_id"], run["model_uri"], run["model_version"], run["planned"]) == ("run-1", V1["uri"], "v1", 42)
    assert json.loads(run["roots"]) == ["/music", "s3://lib/music"]
    assert run["started_at"] and run["finished_at"] is None and run["counts"] is None
    store.finish_run("run-1", {"scored": 40, "unchanged": 0, "failed": 2})
    (run,) = raw.execute("SELECT * FROM runs").fetchall()
    assert run["finished_at"] >= run["started_at"]
    assert json.loads(run["counts"]) == {"scored": 40, "unchanged": 0, "failed": 2}
    raw.close()


def test_concurrent_writers_lose_no_rows(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    LibraryStore(path).close()
    n_threads, n_rows = 4, 60
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def writer(t: int) -> None:
        try:
            with LibraryStore(path) as s:
                barrier.wait()
                for i in range(n_rows):
                    s.record(local(f"t{t}/{i:03d}.mp3"), None, V1, f"run-{t}", SCORED_ROW)
                    s.update_identity(f"/music/t{t}/{i:03d}.mp3", "v1", 1, i, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with LibraryStore(path) as s:
        rows = s.results(model_version="v1")
        assert len(rows) == n_threads * n_rows
        assert all(r["size"] == 1 for r in rows)
        assert [len(s.results(run_id=f"run-{t}")) for t in range(n_threads)] == [n_rows] * n_threads


SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT NOT NULL,
    model_version TEXT NOT NULL,
    model_uri TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    etag TEXT,
    sha256 TEXT,
    status TEXT NOT NULL CHECK (status IN ('scored', 'failed')),
    reason TEXT,
    genre TEXT,
    probability REAL,
    uncertain INTEGER,
    top_k TEXT,
    probs TEXT,
    timeline TEXT,
    duration_s REAL,
    truncated INTEGER,
    n_segments INTEGER,
    run_id TEXT NOT NULL,
    scored_at TEXT NOT NULL,
    tag_status TEXT,
    seen_run TEXT,
    PRIMARY KEY (path, model_version)
);
CREATE INDEX IF NOT EXISTS files_by_run ON files (run_id);
CREATE INDEX IF NOT EXISTS files_by_seen_run ON files (seen_run);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    model_uri TEXT NOT NULL,
    model_version TEXT NOT NULL,
    roots TEXT NOT NULL,
    planned INTEGER,
    counts TEXT
);
"""
"""The DDL of the unversioned store (``user_version`` 0), as ``scoring/store.py`` wrote it before migrations."""


def _schema_1_store(path: Path) -> None:
    """A store as the previous code left it: its DDL, one run, a scored and a failed row."""
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        db.execute(
            "INSERT INTO runs VALUES ('r1', '2026-01-01T00:00:00+00:00', '2026-01-01T00:01:00+00:00', 'models:/m@c',"
            ' \'v1\', \'["/music"]\', 2, \'{"scored": 1, "unchanged": 0, "failed": 1}\')'
        )
        common = "model_version, model_uri, size, mtime_ns, run_id, scored_at, seen_run"
        db.execute(
            f"INSERT INTO files (path, status, genre, probability, uncertain, top_k, sha256, {common})"
            " VALUES ('/music/a.mp3', 'scored', 'jazz', 0.9, 0, '[{\"genre\": \"jazz\", \"probability\": 0.9}]',"
            " 'aa', 'v1', 'models:/m@c', 100, 5, 'r1', '2026-01-01T00:00:30+00:00', 'r1')"
        )
        db.execute(
            f"INSERT INTO files (path, status, reason, {common})"
            " VALUES ('/music/b.mp3', 'failed', 'zero-length file', 'v1', 'models:/m@c', 0, 6, 'r1',"
            " '2026-01-01T00:00:40+00:00', 'r1')"
        )
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0


def test_a_store_of_the_previous_schema_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "out" / STORE_NAME
    _schema_1_store(path)
    with LibraryStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        rows = store.results(model_version="v1")
        assert [(r["path"], r["status"], r["genre"], r["reason"]) for r in rows] == [
            ("/music/a.mp3", SCORED, "jazz", None),
            ("/music/b.mp3", FAILED, None, "zero-length file"),
        ]
        assert rows[0]["top_k"] == [{"genre": "jazz", "probability": 0.9}] and rows[0]["uncertain"] is False
        assert store.run("r1")["counts"] == {"scored": 1, "unchanged": 0, "failed": 1}
        todo, unchanged = plan([local("a.mp3", 100, 5), local("b.mp3", 0, 6)], store.identities("v1"))
        assert (todo, unchanged) == ([], 2)  # the migrated store still spares the rerun
        store.set_mlflow_run("r1", "abc123")  # the column schema 2 added
        assert store.run("r1")["mlflow_run_id"] == "abc123"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with LibraryStore(path) as store:  # opening an up-to-date store changes nothing
        assert len(store.results()) == 2 and store.run("r1")["mlflow_run_id"] == "abc123"


def test_a_new_store_gets_the_latest_schema(tmp_path: Path) -> None:
    with LibraryStore(tmp_path / STORE_NAME) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.start_run("r", "models:/m@c", "v1", ["/music"], 0)
        store.set_mlflow_run("r", "m")
        assert store.run("r")["mlflow_run_id"] == "m" and store.run("nope") is None


def test_old_stores_opened_at_once_are_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "out" / STORE_NAME
    _schema_1_store(path)
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            LibraryStore(path).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors  # no "duplicate column" from a second migration
    with LibraryStore(path) as store:
        assert len(store.results()) == 2


def test_a_store_of_a_newer_schema_is_refused_in_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    with LibraryStore(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError) as info:
        LibraryStore(path)
    message = str(info.value)
    assert str(path) in message and "newer" in message and "\n" not in message
    with sqlite3.connect(path) as db:  # left as it was
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_file_that_is_not_a_store_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    path.write_text("not a database, " * 100)
    with pytest.raises(StoreError, match=f"^{path}: not a usable state store") as info:
        LibraryStore(path)
    assert "\n" not in str(info.value)
