"""The library state store: one SQLite file in the output folder that remembers what was scored.

Rows are keyed by ``(path, model_version)`` and carry the file identity they were computed from
(size, modification time, SHA-256; S3 ETag). A rerun scores only files whose identity changed or
that have no row for the current model version, so a new champion rescores the whole library while
an unchanged library costs one ``stat`` per file. Every file's row is committed as soon as it is
scored (WAL journal), so a killed run loses at most the file in flight.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from scoring.library import LibraryFile

STORE_NAME = "library.sqlite"
SCORED, FAILED = "scored", "failed"

_V1 = (
    """CREATE TABLE IF NOT EXISTS files (
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
)""",
    "CREATE INDEX IF NOT EXISTS files_by_run ON files (run_id)",
    "CREATE INDEX IF NOT EXISTS files_by_seen_run ON files (seen_run)",
    """CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    model_uri TEXT NOT NULL,
    model_version TEXT NOT NULL,
    roots TEXT NOT NULL,
    planned INTEGER,
    counts TEXT
)""",
)
"""Schema 1, the stores written before versioning (``user_version`` 0): ``IF NOT EXISTS``, so it adopts them as they are."""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1,
    (  # 2: each scoring run names its MLflow run; the library view (current model, last listing) has an index
        "ALTER TABLE runs ADD COLUMN mlflow_run_id TEXT",
        "CREATE INDEX IF NOT EXISTS files_by_version_seen ON files (model_version, seen_run)",
    ),
)
"""Ordered schema migrations: step ``i`` (from 0) takes a store from ``PRAGMA user_version`` ``i`` to ``i + 1``.

Append a step to change the schema; never edit a released one (stores in the field have run it).
"""
SCHEMA_VERSION = len(MIGRATIONS)
"""The schema this code writes (``PRAGMA user_version`` of an up-to-date store)."""


class StoreError(ValueError):
    """The state store cannot be used by this code (a newer schema, or not a SQLite database); one line naming the file.

    A ``ValueError``: bad input (the ``--output-dir``), so the CLI prints it in one line.
    """


JSON_COLUMNS = ("top_k", "probs", "timeline")
RESULT_COLUMNS = (
    "path",
    "status",
    "reason",
    "genre",
    "probability",
    "uncertain",
    "top_k",
    "duration_s",
    "truncated",
    "n_segments",
    "model_version",
    "model_uri",
    "size",
    "mtime_ns",
    "sha256",
    "run_id",
    "scored_at",
    "tag_status",
)
"""Columns of the results tables, in order (``probs`` and ``timeline`` are added when present)."""


def store_path(output_dir: str | Path) -> Path:
    """The state store of ``output_dir``."""
    return Path(output_dir) / STORE_NAME


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Run the :data:`MIGRATIONS` steps ``db`` lacks, each in its own transaction; return the schema version.

    Each step re-reads ``user_version`` under a write lock (``BEGIN IMMEDIATE``), so processes that open an
    old store at once migrate it once. ``db`` must be in autocommit mode (``isolation_level=None``).

    Raises:
        StoreError: the store's version is newer than :data:`SCHEMA_VERSION` (written by newer code).
    """
    for version, statements in enumerate(MIGRATIONS, start=1):
        if _user_version(db) >= version:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if _user_version(db) < version:  # another process may have migrated meanwhile
                for sql in statements:
                    db.execute(sql)
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    found = _user_version(db)
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: state store schema version {found} is newer than this code knows ({SCHEMA_VERSION}); "
            "update genre-crnn or use another --output-dir"
        )
    return found


def _user_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


class LibraryStore:
    """SQLite state of one output folder; safe to open from several threads or processes at once."""

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the store at ``path`` and bring its schema up to :data:`SCHEMA_VERSION`.

        Raises:
            StoreError: the file was written by a newer schema, or is not a SQLite database.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self.schema_version = migrate(self._db, self.path)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a usable state store ({exc})") from exc
        except StoreError:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> LibraryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_run(self, run_id: str, model_uri: str, model_version: str, roots: Sequence[str], planned: int) -> None:
        """Record the start of a scoring run."""
        self._db.execute(
            "INSERT OR REPLACE INTO runs (run_id, started_at, model_uri, model_version, roots, planned)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, _now(), model_uri, model_version, json.dumps(list(roots)), planned),
        )

    def finish_run(self, run_id: str, counts: dict[str, int]) -> None:
        """Record the end of a run and its counts."""
        self._db.execute(
            "UPDATE runs SET finished_at = ?, counts = ? WHERE run_id = ?", (_now(), json.dumps(counts), run_id)
        )

    def set_mlflow_run(self, run_id: str, mlflow_run_id: str) -> None:
        """Record the MLflow run that tracks scoring run ``run_id``."""
        self._db.execute("UPDATE runs SET mlflow_run_id = ? WHERE run_id = ?", (mlflow_run_id, run_id))

    def run(self, run_id: str) -> dict | None:
        """The ``runs`` row of ``run_id`` (``roots`` and ``counts`` decoded), or ``None``."""
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        run = dict(row)
        for k in ("roots", "counts"):
            run[k] = json.loads(run[k]) if run[k] is not None else None
        return run

    def identities(self, model_version: str) -> dict[str, sqlite3.Row]:
        """``path -> row`` (identity columns and status) of every file known for ``model_version``."""
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, etag, sha256, status FROM files WHERE model_version = ?", (model_version,)
        )
        return {r["path"]: r for r in rows}

    def record(self, file: LibraryFile, sha256: str | None, model: dict, run_id: str, result: dict) -> None:
        """Insert or replace the row of ``file`` for ``model['version']``; committed at once.

        Args:
            file: the file's identity as listed.
            sha256: hex SHA-256 of its bytes (``None`` when it was not read).
            model: ``uri`` and ``version`` of the model.
            run_id: the scoring run.
            result: ``status`` (``scored``/``failed``) plus the prediction columns or a ``reason``.
        """
        row = {k: None for k in RESULT_COLUMNS} | {"probs": None, "timeline": None, "etag": file.etag}
        row |= {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v for k, v in result.items()}
        row |= {
            "path": file.path,
            "size": file.size,
            "mtime_ns": file.mtime_ns,
            "sha256": sha256,
            "model_version": model["version"],
            "model_uri": model["uri"],
            "run_id": run_id,
            "seen_run": run_id,
            "scored_at": _now(),
        }
        columns = ", ".join(row)
        self._db.execute(
            f"INSERT OR REPLACE INTO files ({columns}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
        )

    def update_identity(
        self, path: str, model_version: str, size: int, mtime_ns: int, sha256: str | None, etag: str | None = None
    ) -> None:
        """The file at ``path`` has a new size/mtime/ETag (touched, re-uploaded or retagged) but the same audio."""
        self._db.execute(
            "UPDATE files SET size = ?, mtime_ns = ?, sha256 = COALESCE(?, sha256), etag = COALESCE(?, etag)"
            " WHERE path = ? AND model_version = ?",
            (size, mtime_ns, sha256, etag, path, model_version),
        )

    def mark_seen(self, paths: Sequence[str], model_version: str, run_id: str) -> None:
        """Record that ``paths`` were in the library listed by ``run_id`` (files gone since drop out of the exports)."""
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE files SET seen_run = ? WHERE path = ? AND model_version = ?",
                [(run_id, p, model_version) for p in paths],
            )

    def set_tag_status(self, path: str, model_version: str, status: str) -> None:
        """Record what tag writing did to ``path`` (``written: Rock``, ``dry-run: ...``, ``skipped: ...``)."""
        self._db.execute(
            "UPDATE files SET tag_status = ? WHERE path = ? AND model_version = ?", (status, path, model_version)
        )

    def results(
        self, *, model_version: str | None = None, run_id: str | None = None, seen_run: str | None = None
    ) -> list[dict]:
        """Rows (JSON columns decoded) for one model version, scored in ``run_id``, listed by ``seen_run``; by path."""
        where, args = [], []
        if seen_run is not None:
            where.append("seen_run = ?")
            args.append(seen_run)
        if model_version is not None:
            where.append("model_version = ?")
            args.append(model_version)
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        sql = "SELECT * FROM files" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY path"
        return [_decode(dict(r)) for r in self._db.execute(sql, args)]


def plan(
    files: Sequence[LibraryFile], known: dict[str, sqlite3.Row], *, retry_failed: bool = False
) -> tuple[list[dict], int]:
    """Which files need work for one model version, from their identity alone (no hashing).

    A file is unchanged when its stored row has the same size and modification time (S3: the same
    size and ETag). Any other known file is handed on with its stored hash (``known_sha256``,
    ``known_etag``), so the scorer can still skip it when only its timestamp moved. Failed files are
    unchanged too unless ``retry_failed``.

    Returns:
        ``(todo, n_unchanged)``: ``todo`` holds :meth:`LibraryFile.to_dict` plus the known hashes.
    """
    todo, unchanged = [], 0
    for f in files:
        row = known.get(f.path)
        if row is not None and not (retry_failed and row["status"] == FAILED):
            same = row["size"] == f.size and (row["etag"] == f.etag if f.is_s3 else row["mtime_ns"] == f.mtime_ns)
            if same:
                unchanged += 1
                continue
        retry = row is None or (retry_failed and row["status"] == FAILED)
        hint = {} if retry else {"known_sha256": row["sha256"], "known_etag": row["etag"]}
        todo.append(f.to_dict() | hint)
    return todo, unchanged


def _decode(row: dict) -> dict:
    for k in JSON_COLUMNS:
        if row.get(k) is not None:
            row[k] = json.loads(row[k])
    for k in ("uncertain", "truncated"):
        if row.get(k) is not None:
            row[k] = bool(row[k])
    return row


def run_progress(path: str | Path, since: float) -> tuple[int, int | None]:
    """``(files done, files planned)`` of the latest run started after ``since`` (a Unix time); planned is ``None`` before it starts.

    Opens the store read-only, so a progress display never blocks the scorers.
    """
    path = Path(path)
    if not path.exists():
        return 0, None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        try:
            run = db.execute(
                "SELECT run_id, planned FROM runs WHERE started_at >= ? ORDER BY started_at DESC LIMIT 1",
                (datetime.fromtimestamp(int(since), UTC).isoformat(timespec="seconds"),),
            ).fetchone()
            if run is None:
                return 0, None
            (done,) = db.execute("SELECT COUNT(*) FROM files WHERE run_id = ?", (run[0],)).fetchone()
        except sqlite3.OperationalError:  # schema not created yet
            return 0, None
    return done, run[1]
