r"""Crash trials: kill -9 ``score``, ``score --tags write`` and ``train`` at random moments, rerun, count the damage.

    .venv/bin/python -m bench.crash_trials --root /tmp/crash --score 20 --tags 5 --train 3 \\
        --pretrained-dir /tmp/genre-crnn-pretrained

Everything lives under ``--root``: a training slice of gtzan_mini (symlinks), a small library (a few
tracks in every format plus broken files), a SQLite MLflow store, a Prefect home. One clean ``train``
registers the champion and one clean ``score`` (and ``score --tags write``) gives the reference
results and the run times. Each trial then starts the CLI in its own process group, kills the group
with SIGKILL at a seeded random moment (``score``: once its state store holds a random number k of
committed rows plus recorded tag statuses, k from 1 to the reference's total, so the kill lands
while files are scored or tagged, not during start-up; ``train``: a random delay within the
reference's run time), and runs the same command again to completion. Per kind it prints:

- ``lost``: library files missing from the final ``library.csv``; ``duplicated``: extra rows for a path
  (in ``library.csv`` or the state store); ``rescored``: files the killed run had committed that the
  rerun scored again; ``mismatched``: rows whose status, genre or probability differ from the reference;
- ``changed``: files whose bytes changed though no tag was written to them, and temporary tag copies
  left behind; ``corrupted``: tagged files that no longer decode to the original samples or lack the tag;
- ``stale``: MLflow runs still RUNNING after the rerun; ``pending``: logged models still PENDING.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GENRE_CRNN_SHARED", ROOT.parent / "shared"))
GENRES_DIR = SHARED / "data" / "gtzan_mini" / "genres"
TRAIN_OPTIONS = ["--epochs", "1", "--batch-size", "32", "--patience", "1"]
LIBRARY_TRACKS = ("blues.00000", "classical.00001", "metal.00002")
MAX_DURATION_S = 10.0
"""Seconds scored per file (score's --max-duration-s): short runs, so many trials fit in a few minutes each."""
COLUMNS = (
    "trials",
    "killed",
    "lost",
    "duplicated",
    "rescored",
    "mismatched",
    "changed",
    "corrupted",
    "stale",
    "pending",
)


def build_inputs(root: Path, tracks_per_genre: int) -> tuple[Path, Path]:
    """The training slice (``tracks_per_genre`` symlinks per genre) and the library template under ``root``."""
    from bench.transcode import transcode, write_broken

    train = root / "train" / "genres"
    if not train.is_dir():
        for genre_dir in sorted(GENRES_DIR.iterdir()):
            (train / genre_dir.name).mkdir(parents=True)
            for src in sorted(genre_dir.glob("*.wav"))[:tracks_per_genre]:
                (train / genre_dir.name / src.name).symlink_to(src)
    library = root / "library"
    if not library.is_dir():
        for track in LIBRARY_TRACKS:
            genre = track.split(".")[0]
            transcode(GENRES_DIR / genre / f"{track}.wav", library / genre)
        write_broken(library / "incoming", GENRES_DIR / "blues" / "blues.00000.wav")
    return train.parent, library


def environment(root: Path, pretrained_dir: Path | None) -> dict:
    """The CLI's environment: SQLite tracking and registry, a Prefect home and the pretrained cache under ``root``."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "PREFECT_HOME": str(root / "prefect")}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if pretrained_dir is not None:
        env["GENRE_CRNN_PRETRAINED_DIR"] = str(pretrained_dir)
    return env


def cli(*args: str) -> list[str]:
    """The command line of one ``typer_cli.py`` call."""
    return [sys.executable, str(ROOT / "typer_cli.py"), *args]


def run_to_end(cmd: list[str], root: Path, env: dict, timeout_s: float = 1800) -> float:
    """Run ``cmd`` in ``root`` to completion; its wall time (in s). Raises with the output's tail if it fails."""
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return time.monotonic() - start


def timed_reference(cmd: list[str], out: Path, root: Path, env: dict) -> tuple[float, float]:
    """Run ``cmd`` (a ``score`` into ``out``) to completion; when its first row was committed and when it ended (in s)."""
    start, first, log = time.monotonic(), None, out.with_name(out.name + ".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if first is None and committed(out):
                first = time.monotonic() - start
            time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    total = time.monotonic() - start
    return (total if first is None else first), total


def run_and_kill(cmd: list[str], root: Path, env: dict, delay_s: float) -> bool:
    """Start ``cmd`` in its own process group, SIGKILL the group after ``delay_s``; whether it was still running."""
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        proc.wait(timeout=delay_s)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def files_of(library: Path) -> list[Path]:
    """Every listed file of ``library`` (hidden ones left out, as scans do), symlinks included."""
    return sorted(p for p in library.rglob("*") if (p.is_file() or p.is_symlink()) and not p.name.startswith("."))


def sha(path: Path) -> str | None:
    """SHA-256 of a file's bytes, ``None`` for a broken symlink."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def library_rows(out: Path, library: Path) -> pd.DataFrame:
    """``library.csv`` of ``out`` with paths relative to ``library``."""
    rows = pd.read_csv(out / "library.csv")
    rows["path"] = [str(Path(p).relative_to(library)) for p in rows["path"]]
    return rows


def committed(out: Path) -> dict[str, str]:
    """Path -> run id of every row in the state store of ``out`` (empty when there is none yet)."""
    store = out / "library.sqlite"
    if not store.exists():
        return {}
    with sqlite3.connect(store, timeout=30) as db:
        try:
            return dict(db.execute("SELECT path, run_id FROM files"))
        except sqlite3.OperationalError:  # killed before the schema was written
            return {}


def progress(out: Path) -> int:
    """Rows committed to the state store of ``out`` plus files whose tag status is recorded (0 before either)."""
    store = out / "library.sqlite"
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=30) as db:
            return db.execute("SELECT COUNT(*) + COUNT(tag_status) FROM files").fetchone()[0]
    except sqlite3.OperationalError:  # killed before the schema was written
        return 0


def run_and_kill_at(cmd: list[str], out: Path, root: Path, env: dict, step: int) -> bool:
    """Start ``cmd`` in its own process group, SIGKILL the group once :func:`progress` reaches ``step``; whether it ran."""
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while proc.poll() is None:
            if progress(out) >= step:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.02)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def store_duplicates(out: Path) -> int:
    """Rows of the state store beyond one per (path, model version)."""
    with sqlite3.connect(out / "library.sqlite", timeout=30) as db:
        return db.execute("SELECT COUNT(*) - COUNT(DISTINCT path || '|' || model_version) FROM files").fetchone()[0]


def compare_rows(rows: pd.DataFrame, reference: pd.DataFrame) -> dict[str, int]:
    """lost, duplicated and mismatched rows of ``rows`` against the clean run's ``reference``."""
    ref = reference.set_index("path")
    lost = len(set(ref.index) - set(rows["path"]))
    duplicated = int(rows["path"].duplicated().sum())
    mismatched = 0
    for row in rows.drop_duplicates("path").itertuples():
        if row.path not in ref.index:
            mismatched += 1
            continue
        want = ref.loc[row.path]
        same = row.status == want.status and str(row.genre) == str(want.genre)
        if same and row.status == "scored":
            same = abs(float(row.probability) - float(want.probability)) < 1e-4
        mismatched += not same
    return {"lost": lost, "duplicated": duplicated, "mismatched": mismatched}


def score_trial(cmd: list[str], out: Path, library: Path, reference: pd.DataFrame, ctx: dict, step: int) -> dict:
    """Kill one ``score`` run once its progress reaches ``step`` (see :func:`progress`), rerun it; its counts."""
    killed = run_and_kill_at(cmd, out, ctx["root"], ctx["env"], step)
    before = committed(out)
    run_to_end(cmd, ctx["root"], ctx["env"])
    rows = library_rows(out, library)
    with sqlite3.connect(out / "library.sqlite", timeout=30) as db:
        last_run = db.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        rerun = {p for (p,) in db.execute("SELECT path FROM files WHERE run_id = ?", (last_run,))}
    counts = compare_rows(rows, reference) | {"killed": int(killed), "trials": 1}
    counts["duplicated"] += store_duplicates(out)
    counts["rescored"] = len(set(before) & rerun)
    return counts


def check_files(library: Path, template: Path, reference: pd.DataFrame, originals: dict) -> dict[str, int]:
    """Count changed and corrupted files of a tagged ``library`` against its ``template`` and the tags of ``reference``."""
    from crnn.audio import load_audio
    from scoring import tags

    written = {r.path: r.genre for r in reference.itertuples() if str(r.tag_status).startswith("written")}
    changed = len([p for p in library.rglob("*") if ".tagging-" in p.name])
    corrupted = 0
    for path in files_of(library):
        rel = str(path.relative_to(library))
        if rel not in written:
            changed += sha(path) != sha(template / rel)
            continue
        try:
            same = np.array_equal(load_audio(path, 22050), originals[rel])
            same = same and tags.read_genre(path) == tags.GENRE_TAG_VALUES[written[rel]]
        except Exception:  # noqa: BLE001 - a file that no longer decodes is what this counts
            same = False
        corrupted += not same
    return {"changed": changed, "corrupted": corrupted}


def mlflow_leftovers(env: dict) -> dict[str, int]:
    """RUNNING runs and PENDING logged models of the store in ``env``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_REGISTRY_URI"])
    ids = [e.experiment_id for e in client.search_experiments()]
    stale = len(client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=1000)) if ids else 0
    pending = 0
    if ids:
        pending = sum(str(m.status).endswith("PENDING") for m in client.search_logged_models(ids, max_results=1000))
    return {"stale": stale, "pending": pending}


def print_table(results: dict[str, Counter]) -> None:
    """One line per kind: the counts of :data:`COLUMNS`."""
    print(f"{'kind':<12}" + "".join(f"{c:>11}" for c in COLUMNS))
    for kind, counts in results.items():
        print(f"{kind:<12}" + "".join(f"{counts[c]:>11}" for c in COLUMNS))


def score_command(library: Path, out: Path, uncertain_below: float, *extra: str) -> list[str]:
    """``typer_cli.py score`` of ``library`` into ``out`` (chunks of 4 files, :data:`MAX_DURATION_S` per file)."""
    options = ["--chunk-size", "4", "--uncertain-below", str(uncertain_below), "--max-duration-s", str(MAX_DURATION_S)]
    return cli("score", "--library", str(library), "--output-dir", str(out), *options, *extra)


def score_trials(ctx: dict, template: Path, n: int, rng: random.Random) -> Counter:
    """A clean reference ``score`` of ``template``, then ``n`` killed and rerun ones, each into a new folder."""
    ref_out = ctx["root"] / "reference" / "score"
    cmd = score_command(template, ref_out, ctx["uncertain_below"])
    t_first, t_score = timed_reference(cmd, ref_out, ctx["root"], ctx["env"])
    reference = library_rows(ref_out, template)
    print(f"reference score: first row at {t_first:.0f} s, done at {t_score:.0f} s, {len(reference)} rows")
    steps = progress(ref_out)
    before = {str(p.relative_to(template)): sha(p) for p in files_of(template)}
    counts = Counter({c: 0 for c in COLUMNS})
    for i in range(n):
        out = ctx["root"] / "trials" / f"score-{i}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = score_command(template, out, ctx["uncertain_below"])
        counts += score_trial(cmd, out, template, reference, ctx, rng.randint(1, steps))
    counts["changed"] += sum(sha(template / p) != h for p, h in before.items())
    return counts


def tag_trials(ctx: dict, template: Path, n: int, rng: random.Random) -> Counter:
    """A clean reference ``score --tags write`` of a copy of ``template``, then ``n`` killed and rerun ones on copies."""
    from crnn.audio import load_audio

    root = ctx["root"]
    ref_lib = Path(shutil.copytree(template, root / "reference" / "tagged", symlinks=True))
    cmd = score_command(ref_lib, root / "reference" / "tags", ctx["uncertain_below"], "--tags", "write")
    t_first, t_tags = timed_reference(cmd, root / "reference" / "tags", root, ctx["env"])
    reference = library_rows(root / "reference" / "tags", ref_lib)
    steps = progress(root / "reference" / "tags")
    tagged = {r.path for r in reference.itertuples() if str(r.tag_status).startswith("written")}
    originals = {rel: load_audio(template / rel, 22050) for rel in tagged}
    print(f"reference score --tags write: first row at {t_first:.0f} s, done at {t_tags:.0f} s, {len(tagged)} tagged")
    counts = Counter({c: 0 for c in COLUMNS})
    for i in range(n):
        lib, out = root / "trials" / f"tags-{i}" / "library", root / "trials" / f"tags-{i}" / "scores"
        shutil.rmtree(lib.parent, ignore_errors=True)
        shutil.copytree(template, lib, symlinks=True)
        cmd = score_command(lib, out, ctx["uncertain_below"], "--tags", "write")
        counts += Counter(score_trial(cmd, out, lib, reference, ctx, rng.randint(1, steps)))
        counts += Counter(check_files(lib, template, reference, originals))
    return counts


def train_trials(ctx: dict, train_cmd: list[str], t_train: float, n: int, rng: random.Random) -> Counter:
    """``n`` killed and rerun ``train`` runs; RUNNING runs and PENDING logged models after each rerun."""
    counts = Counter({c: 0 for c in COLUMNS})
    for _ in range(n):
        killed = run_and_kill(train_cmd, ctx["root"], ctx["env"], rng.uniform(0, t_train))
        run_to_end(train_cmd, ctx["root"], ctx["env"])
        counts += Counter({"trials": 1, "killed": int(killed)} | mlflow_leftovers(ctx["env"]))
    return counts


def run_trials(args: argparse.Namespace) -> dict[str, Counter]:
    """The reference train (its champion scores), then every trial; the summed counts per kind."""
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    train, template = build_inputs(root, args.tracks_per_genre)
    ctx = {"root": root, "env": environment(root, args.pretrained_dir), "uncertain_below": args.uncertain_below}
    train_cmd = cli("train", "--source", str(train), "--work-dir", str(root / "work"), *TRAIN_OPTIONS)
    timings = root / "reference-train-s"  # the champion of an earlier call of this script on ``root`` is reused
    if not timings.exists():
        timings.write_text(str(run_to_end(train_cmd, root, ctx["env"])))
    t_train = float(timings.read_text())
    print(f"reference train: {t_train:.0f} s", flush=True)
    results = {"score": score_trials(ctx, template, args.score, rng)}
    print_table(results)
    if args.tags:
        results["tags"] = tag_trials(ctx, template, args.tags, rng)
        print_table(results)
    if args.train:
        results["train"] = train_trials(ctx, train_cmd, t_train, args.train, rng)
    return results


def main() -> None:
    """Parse the options, run the trials, print the table."""
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="Work folder (created; reused when run again).")
    parser.add_argument("--score", type=int, default=20, help="Trials killing `score`.")
    parser.add_argument("--tags", type=int, default=5, help="Trials killing `score --tags write`.")
    parser.add_argument("--train", type=int, default=3, help="Trials killing `train`.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill delays.")
    parser.add_argument(
        "--uncertain-below",
        type=float,
        default=0.2,
        help="score's --uncertain-below: a model trained for 1 epoch is rarely sure, and uncertain tracks are not tagged.",
    )
    parser.add_argument("--tracks-per-genre", type=int, default=3, help="Training tracks per genre (gtzan_mini).")
    parser.add_argument(
        "--pretrained-dir", type=Path, default=None, help="Converted musicnn weights cache (default: converted once)."
    )
    args = parser.parse_args()
    if not GENRES_DIR.is_dir():
        sys.exit(f"gtzan_mini not found at {GENRES_DIR} (set GENRE_CRNN_SHARED)")
    print_table(run_trials(args))


if __name__ == "__main__":
    main()
