"""Scoring speed, side by side in one run: `score` as users run it, its in-process core, a naive loop, decoding.

    .venv/bin/python -m bench.score_speed --work-dir work/score-speed --out bench/score_speed

It builds once (cached in ``--work-dir``) a library of ``--tracks`` 30 s copies of the ``--source`` tracks in
mixed formats (FLAC, MP3, Ogg Vorbis, M4A, WAV; 44.1/48 kHz stereo) plus ``--long`` long concatenations
(5, 7, 9 min), registers a freshly initialised model of each architecture as ``champion`` of its own
registered model in an isolated MLflow store (SQLite in the work dir; speed does not depend on the
weights) and gives Prefect a home there. Then, each round, alternating architectures, it times:

- ``startup``: ``python typer_cli.py score`` on an empty folder (whole process, wall s);
- ``score``: the same command on the library, fresh output folder (tracks/s, real-time factor, peak RSS);
- ``core``: in-process, what ``score-chunk`` runs (``scoring.engine.plan_run`` and ``score_files`` on
  ``CHUNK_WORKERS`` threads, with the SQLite state store), no Prefect or MLflow;
- ``naive``: a per-file loop: ``librosa.load(path, sr=model rate, mono=True)`` (M4A through PyAV, which
  libsndfile cannot read), one log-mel and one forward per segment, same checkpoint;
- ``decode``: ``crnn.scoring.decode_for`` alone (decode, mono, resample, as ``score`` does).

It prints medians over ``--rounds``, the ratios (score/naive, score/core, core/decode) and how often
``score`` and the naive loop agree on the genre, and writes ``score_speed.md``, ``score_speed.csv``
(one row per architecture and mode), ``score_speed_ratios.csv`` and ``score_speed_rounds.csv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import librosa
import numpy as np
import psutil
import torch

from bench.transcode import mixed_library
from crnn.atomic import atomic_open, write_text_atomic
from crnn.audio import FFMPEG_EXTENSIONS
from crnn.config import ARCHITECTURES, CLASSIC_ARCHITECTURE, ModelConfig
from crnn.features import scored_segment_starts
from crnn.inference import load_checkpoint
from crnn.requests import ScoreRequest

ROOT = Path(__file__).resolve().parent.parent
MODES = ("startup", "score", "core", "naive", "decode")
"""What is timed, in this order each round."""
DEFAULT_ARCHITECTURES = tuple(dict.fromkeys((ModelConfig.architecture, CLASSIC_ARCHITECTURE)))
LONG_SOURCES = (10, 14, 18)
"""Source tracks (about 30 s each) concatenated into each long track: 5, 7 and 9 min."""
QUICK = {"tracks": 6, "long": 1, "rounds": 1}
RSS_POLL_S = 0.05


class BenchError(Exception):
    """A problem with the bench's input or a command it ran (reported in one line)."""


@dataclass
class Measure:
    """One timed run: ``wall_s`` seconds for ``files`` files of ``audio_s`` seconds (``genres``: path -> genre)."""

    architecture: str
    mode: str
    round: int
    files: int
    scored: int
    audio_s: float
    wall_s: float
    peak_rss_mb: float = float("nan")
    genres: dict[str, str] = field(default_factory=dict, repr=False)


def bench_env(work: Path) -> dict[str, str]:
    """The environment of the ``score`` processes: the user's, with MLflow and Prefect pointed into ``work``."""
    store = f"sqlite:///{work / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "GENRE_CRNN_DASK"))}
    env.pop("VIRTUAL_ENV", None)
    return env | {
        "MLFLOW_TRACKING_URI": store,
        "MLFLOW_REGISTRY_URI": store,
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def register_models(architectures: list[str], work: Path) -> dict[str, tuple[str, Path, Path | None]]:
    """Register a freshly initialised model per architecture as champion (once).

    Returns:
        architecture -> (model URI, checkpoint, its exported ONNX classifier or None where the export failed):
        the in-process core scores with what ``score`` resolves from the registry.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from crnn.config import PipelineConfig
    from crnn.inference import build_model, checkpoint_state
    from crnn.requests import SCORING_EXPERIMENT
    from crnn.train import save_checkpoint
    from infra import registry

    mlflow.set_tracking_uri(bench_env(work)["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(bench_env(work)["MLFLOW_REGISTRY_URI"])
    client, artifacts = MlflowClient(), (work / "mlartifacts").as_uri()
    for name in ("score-speed-bench", SCORING_EXPERIMENT):  # artifacts in the work dir, not ./mlartifacts
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name, artifact_location=artifacts)
    models = {}
    for arch in architectures:
        name, checkpoint = f"{registry.MODEL_NAME}-bench-{arch}", work / "models" / f"{arch}.pt"
        uri = f"models:/{name}@{registry.CHAMPION}"
        try:
            client.get_model_version_by_alias(name, registry.CHAMPION)
            if checkpoint.exists():
                models[arch] = (uri, checkpoint, registry.resolve_model(uri, work / "model-cache")["onnx"])
                continue
        except MlflowException:
            pass
        torch.manual_seed(0)
        cfg = PipelineConfig.from_options(architecture=arch)
        save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), checkpoint)
        with mlflow.start_run(experiment_id=client.get_experiment_by_name("score-speed-bench").experiment_id) as run:
            mlflow.set_tag("architecture", arch)
        model_uri = registry.log_model(run.info.run_id, checkpoint, cfg.model.labels)
        version = mlflow.register_model(model_uri, name).version
        client.set_registered_model_alias(name, registry.CHAMPION, version)
        models[arch] = (uri, checkpoint, registry.resolve_model(uri, work / "model-cache")["onnx"])
    return models


def run_process(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` from the repository root; return its wall time (s) and the peak RSS of its process tree (MiB).

    The RSS of the process and all its descendants is summed every :data:`RSS_POLL_S` seconds.

    Raises:
        BenchError: the command failed (its log is named).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = 0
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = psutil.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            rss = 0
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:  # ended between listing and reading
                    pass
            peak = max(peak, rss)
            time.sleep(RSS_POLL_S)
        wall = time.perf_counter() - start
    if proc.returncode:
        raise BenchError(f"{' '.join(cmd[1:4])} ... exited with {proc.returncode}; see {log}")
    return wall, peak / 2**20


def store_genres(output_dir: Path) -> dict[str, str]:
    """Path -> genre of the scored rows of an output folder's state store."""
    from scoring.store import SCORED, LibraryStore, store_path

    with LibraryStore(store_path(output_dir)) as store:
        return {r["path"]: r["genre"] for r in store.results() if r["status"] == SCORED}


def score_command(library: Path, output_dir: Path, model_uri: str) -> list[str]:
    """``python typer_cli.py score`` as README.md shows it, with this library, output folder and model."""
    options = ["--library", str(library), "--output-dir", str(output_dir), "--model-uri", model_uri]
    return [sys.executable, "typer_cli.py", "score", *options]


def time_core(library: Path, output_dir: Path, checkpoint: Path, onnx: Path | None) -> tuple[int, dict[str, str]]:
    """What ``score-chunk`` runs, in process: plan, load the model, score the chunks on ``CHUNK_WORKERS`` threads.

    The model scores with its registered ONNX classifier (``onnx``) as ``score`` does; torch without one.
    """
    from flows.batch_score_flow import CHUNK_WORKERS
    from scoring import engine
    from scoring.prepare import loaded_model
    from scoring.store import LibraryStore, store_path

    request = ScoreRequest(library=[str(library)], output_dir=str(output_dir))
    model, run_id = {"uri": str(checkpoint), "version": f"bench/{checkpoint.stem}"}, uuid.uuid4().hex
    planned = engine.plan_run(request.library, output_dir, model, run_id, chunk_size=request.chunk_size)

    def chunk(files: list[dict]) -> None:
        net = loaded_model(str(checkpoint), request.device, str(onnx) if onnx else None)
        with LibraryStore(store_path(output_dir)) as store:
            engine.score_files(files, net, store, model, run_id, request.scoring_options(), output_dir / "s3-cache")

    with ThreadPoolExecutor(CHUNK_WORKERS) as pool:
        list(pool.map(chunk, planned["chunks"]))
    genres = store_genres(output_dir)
    return len(genres), genres


def naive_load(path: Path, sample_rate: int) -> np.ndarray:
    """``librosa.load(path, sr=sample_rate, mono=True)``; M4A (which libsndfile cannot read) decoded by PyAV first."""
    if path.suffix.lower() not in FFMPEG_EXTENSIONS:
        return librosa.load(path, sr=sample_rate, mono=True)[0]
    with av.open(str(path)) as f:
        frames = [frame.to_ndarray() for frame in f.decode(audio=0)]  # (channels, time) planar float
        native = f.streams.audio[0].rate
    return librosa.resample(librosa.to_mono(np.concatenate(frames, axis=1)), orig_sr=native, target_sr=sample_rate)


@torch.inference_mode()
def naive_genre(net: torch.nn.Module, path: Path) -> str:
    """A per-file loop's genre: load, then one log-mel and one forward per segment, mean of the probabilities."""
    cfg = net.feature_cfg
    waveform = torch.from_numpy(naive_load(path, cfg.sample_rate))
    width = (cfg.segment_frames - 1) * cfg.hop_length  # samples that give segment_frames centred frames
    starts = scored_segment_starts(1 + waveform.numel() // cfg.hop_length, cfg)
    probs = [torch.softmax(net(waveform[s * cfg.hop_length :][:width][None]), -1)[0] for s in starts]
    return net.model_cfg.labels[int(torch.stack(probs).mean(0).argmax())]


def time_naive(files: list[Path], checkpoint: Path) -> tuple[int, dict[str, str]]:
    """Score ``files`` one by one with :func:`naive_genre` (model loaded inside the timing)."""
    net, _ = load_checkpoint(checkpoint)
    genres = {str(p): naive_genre(net, p) for p in files}
    return len(genres), genres


def time_decode(files: list[Path], checkpoint: Path) -> tuple[int, dict[str, str]]:
    """Decode ``files`` for the checkpoint's model as ``score`` does (:func:`crnn.scoring.decode_for`)."""
    from crnn.scoring import decode_for

    net, _ = load_checkpoint(checkpoint)
    max_s = ScoreRequest.model_fields["max_duration_s"].default or None
    for path in files:
        decode_for(net, path, max_s)
    return len(files), {}


def measure(mode: str, arch: str, rnd: int, library: dict, model: tuple[str, Path, Path | None], work: Path) -> Measure:
    """Time one ``mode`` for one architecture, with a fresh output folder (removed afterwards)."""
    uri, checkpoint, onnx = model
    root, out = Path(library["root"]), work / "runs" / f"{arch}-{mode}-r{rnd}"
    shutil.rmtree(out, ignore_errors=True)
    files = [] if mode == "startup" else [root / f["path"] for f in library["files"]]
    audio_s = 0.0 if mode == "startup" else sum(f["seconds"] for f in library["files"])
    rss = float("nan")
    if mode in ("startup", "score"):
        target = root if mode == "score" else work / "empty-library"
        target.mkdir(parents=True, exist_ok=True)
        wall, rss = run_process(score_command(target, out, uri), bench_env(work), work / "logs" / f"{out.name}.log")
        genres = store_genres(out) if mode == "score" else {}
        scored = len(genres)
    else:
        timed = {"core": lambda: time_core(root, out, checkpoint, onnx), "naive": lambda: time_naive(files, checkpoint)}
        start = time.perf_counter()
        scored, genres = timed.get(mode, lambda: time_decode(files, checkpoint))()
        wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return Measure(arch, mode, rnd, len(files), scored, audio_s, wall, rss, genres)


def agreement(a: dict[str, str], b: dict[str, str]) -> float:
    """Fraction of the paths of ``a`` that ``b`` gives the same genre (0 when ``a`` is empty)."""
    return sum(b.get(p) == g for p, g in a.items()) / len(a) if a else 0.0


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def summarize(measures: list[Measure]) -> tuple[list[dict], list[dict]]:
    """Median rows per (architecture, mode), and per architecture the ratios and genre agreement.

    ``tracks_per_s`` = files scored / median wall s; ``realtime_x`` = audio s / median wall s; ``peak_rss_mb``
    (MiB) only for the whole-process modes; ``None`` where a figure does not apply.
    """
    rows, ratios = [], []
    for arch in dict.fromkeys(m.architecture for m in measures):
        by_mode = {mode: [m for m in measures if m.architecture == arch and m.mode == mode] for mode in MODES}
        speed = {}
        for mode, ms in by_mode.items():
            wall, last = statistics.median(m.wall_s for m in ms), ms[-1]
            speed[mode] = last.scored / wall if last.scored else None
            rss = max(m.peak_rss_mb for m in ms)
            rows.append(
                {
                    "architecture": arch,
                    "mode": mode,
                    "rounds": len(ms),
                    "files": last.files,
                    "scored": last.scored,
                    "audio_s": round(last.audio_s, 1),
                    "wall_s": round(wall, 2),
                    "tracks_per_s": None if speed[mode] is None else round(speed[mode], 2),
                    "realtime_x": round(last.audio_s / wall, 1) if last.audio_s else None,
                    "peak_rss_mb": None if np.isnan(rss) else round(rss),
                }
            )
        genres = {mode: by_mode[mode][-1].genres for mode in ("score", "core", "naive")}
        ratios.append(
            {
                "architecture": arch,
                "startup_s": round(statistics.median(m.wall_s for m in by_mode["startup"]), 2),
                "score_vs_naive": _ratio(speed["score"], speed["naive"]),
                "score_vs_core": _ratio(speed["score"], speed["core"]),
                "core_vs_decode": _ratio(speed["core"], speed["decode"]),
                "same_genre_score_naive": round(agreement(genres["score"], genres["naive"]), 4),
                "same_genre_score_core": round(agreement(genres["score"], genres["core"]), 4),
            }
        )
    return rows, ratios


def _markdown(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    body = ["| " + " | ".join("-" if r[k] is None else str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines + body) + "\n"


def _csv(path: Path, rows: list[dict]) -> None:
    with atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def report(measures: list[Measure], out: Path, about: str) -> tuple[list[dict], list[dict]]:
    """Print the summary tables and write them to ``out`` (markdown and CSV, atomically); return them."""
    from rich.console import Console
    from rich.table import Table

    rows, ratios = summarize(measures)
    console = Console(width=None if sys.stdout.isatty() else 160)
    for title, table_rows in (("score speed (medians over rounds)", rows), ("ratios of tracks/s", ratios)):
        table = Table(*table_rows[0], title=title)
        for r in table_rows:
            table.add_row(*("-" if v is None else str(v) for v in r.values()))
        console.print(table)
    console.print(about)
    out.mkdir(parents=True, exist_ok=True)
    _csv(out / "score_speed.csv", rows)
    _csv(out / "score_speed_ratios.csv", ratios)
    raw = [{k: v for k, v in vars(m).items() if k != "genres"} for m in measures]
    _csv(out / "score_speed_rounds.csv", raw)
    text = f"# Scoring speed\n\n{about}\n\n{_markdown(rows)}\n{_markdown(ratios)}"
    write_text_atomic(out / "score_speed.md", text)
    return rows, ratios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` sets the tracks, long tracks and rounds of :data:`QUICK` not given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, help="30 s tracks in the library (default 300)")
    parser.add_argument("--long", type=int, help=f"long tracks, at most {len(LONG_SOURCES)} (default 3)")
    parser.add_argument("--rounds", type=int, help="rounds; medians are printed (default 3)")
    parser.add_argument("--architectures", default=",".join(DEFAULT_ARCHITECTURES), help="comma-separated")
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared/data/gtzan_mini/genres")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "work" / "score-speed", help="library, stores, logs")
    parser.add_argument("--out", type=Path, default=ROOT / "work" / "score-speed" / "results", help="summary folder")
    parser.add_argument("--skip-build", action="store_true", help="use the library already in --work-dir")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}, 2-source long track")
    parser.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"tracks": 300, "long": 3, "rounds": 3}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    archs = args.architectures.split(",")
    if bad := [a for a in archs if a not in ARCHITECTURES]:
        parser.error(f"--architectures: unknown {', '.join(bad)} (choose from {', '.join(ARCHITECTURES)})")
    if args.tracks < 1 or args.rounds < 1 or not 0 <= args.long <= len(LONG_SOURCES):
        parser.error(f"--tracks and --rounds must be >= 1, --long in 0..{len(LONG_SOURCES)}")
    if not args.skip_build and not args.source.is_dir():
        parser.error(f"--source {args.source}: not a folder")
    args.architectures = archs
    return args


def library_for(args: argparse.Namespace) -> dict:
    """Build (or reuse) the library of the options; its manifest plus ``root``."""
    long_sources = [2] * args.long if args.quick else list(LONG_SOURCES[: args.long])
    root = args.work_dir.resolve() / f"library-{args.tracks}-tracks-{args.long}-long"
    if args.skip_build:
        if not root.with_suffix(".json").exists():
            raise BenchError(f"--skip-build: no library built in {root} (run once without it)")
        return json.loads(root.with_suffix(".json").read_text()) | {"root": str(root)}
    sources = sorted(args.source.rglob("*.wav"))
    if not sources:
        raise BenchError(f"--source {args.source}: no .wav files")
    return mixed_library(sources, root, args.tracks, long_sources) | {"root": str(root)}


def run(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Build, register, time every mode each round (alternating the architectures' order), report."""
    work = args.work_dir.resolve()
    library = library_for(args)
    models = register_models(args.architectures, work)
    measures = []
    for rnd in range(args.rounds):
        order = (
            args.architectures[rnd % len(args.architectures) :] + args.architectures[: rnd % len(args.architectures)]
        )
        for mode in MODES:
            for arch in order:
                measures.append(m := measure(mode, arch, rnd, library, models[arch], work))
                print(f"round {rnd + 1}/{args.rounds} {arch:>16} {mode:>7}: {m.wall_s:7.2f} s", flush=True)
    about = (
        f"{len(library['files'])} files ({args.tracks} tracks in mixed formats + {args.long} long), "
        f"{sum(f['seconds'] for f in library['files']):.0f} s of audio; {args.rounds} round(s); "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads; peak RSS: process tree of `score`."
    )
    return report(measures, args.out, about)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: one-line errors unless ``--debug``."""
    args = parse_args(argv)
    try:
        run(args)
    except (BenchError, OSError, ValueError) as exc:
        if args.debug:
            raise
        sys.exit(f"score_speed: error: {exc}")


if __name__ == "__main__":
    main()
