"""Learning curve: how many tagged tracks per label a user needs, by cross-artist accuracy of the default model.

    .venv/bin/python -m bench.learning_curve --sizes 2,4,6,8,10 --seeds 42,43,44

For each seed, every genre's tracks of ``--source`` are shuffled once and the first ``n`` kept for each
``n`` of ``--sizes`` (so a seed's smaller subset lies inside its larger ones). The model trains on them as
in the protocol's cross-artist evaluation (a stratified ``val_fraction`` of the tracks, at least one per
genre, is held out for early stopping and the calibration temperature) and is tested on the cross-artist
clips (``gtzan_excerpts``: mostly other artists). Each point is a protocol parent run with one nested
evaluation in MLflow (``protocol-flow``'s ``protocol-evaluation`` subflow). Writes
``bench/learning_curve.csv`` (one row per size and seed; a row already there with the same settings is
not run again, so an interrupted run resumes) and the Markdown table (mean ± sample std over seeds) to
``bench/learning_curve.md`` and into ``bench/RESULTS.md`` (the section between its markers).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow

from bench.zoo import _mean_std, hardware
from crnn import protocol
from crnn.atomic import write_text_atomic
from crnn.config import UNCERTAIN_BELOW, TrainConfig
from crnn.dataset import write_csv_atomic
from crnn.requests import CROSS_ARTIST_SOURCE, TRAIN_SOURCE, ProtocolRequest
from flows.protocol_flow import protocol_evaluation
from tasks.download import download_dataset
from tasks.features import compute_log_mels, plan_log_mels, summarize_log_mels
from tasks.pretrained import prepare_pretrained
from tasks.protocol import plan_protocol, start_protocol_run
from tasks.split import SPLIT_TABLE_COLUMNS
from tasks.tracking import end_mlflow_run

COLUMNS = [
    "model", "tracks_per_label", "train_tracks_per_label", "seed", "cross_artist_accuracy", "cross_artist_macro_f1",
    "cross_artist_selective_accuracy", "cross_artist_uncertain_share", "train_seconds", "epochs", "mixup_alpha",
    "device", "hardware", "run_id",
]  # fmt: skip
SETTINGS = ["model", "epochs", "mixup_alpha", "device"]
"""Columns that must match for rows to be compared (and averaged over seeds)."""
BEGIN, END = "<!-- learning-curve:begin -->", "<!-- learning-curve:end -->"
"""Markers of the learning-curve section in ``bench/RESULTS.md`` (replaced on every write)."""


def draw_subset(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The first ``n`` tracks of each genre of ``table`` after a seeded shuffle per genre (nested in ``n``).

    Args:
        table: training tracks, with ``track_id`` and ``genre`` columns.
        n: tracks per genre; a genre with fewer keeps all of its tracks.
        seed: seeds the shuffle; the same seed gives the same order, so subsets for larger ``n`` contain smaller ones.

    Returns:
        The kept rows, in ``table``'s order.
    """
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for _, group in table.sort_values("track_id").groupby("genre", sort=True):
        keep |= set(group["track_id"].to_numpy()[rng.permutation(len(group))][:n])
    return table[table["track_id"].isin(keep)]


def subset_table(cross_artist_csv: str, n: int, seed: int, val_fraction: float, out: Path) -> Path:
    """A cross-artist split table that trains on :func:`draw_subset` of its training tracks; its path.

    The kept tracks are split again into ``train``/``val`` (:func:`crnn.protocol.cross_artist`); the
    ``test`` rows (the cross-artist clips) are kept as they are.

    Raises:
        ValueError: a genre keeps fewer than 2 tracks (one to train, one to validate).
    """
    table = pd.read_csv(cross_artist_csv, dtype=str, keep_default_na=False)
    test, training = table[table["split"] == "test"], table[table["split"] != "test"]
    kept = draw_subset(training, n, seed)
    assignment = protocol.cross_artist(
        list(kept["track_id"]), list(kept["genre"]), val_fraction=val_fraction, seed=seed
    )
    kept = kept.assign(split=kept["track_id"].map(assignment.assignment))
    path = out / f"cross-artist-{n}-per-label-seed-{seed}.csv"
    write_csv_atomic(path, SPLIT_TABLE_COLUMNS, pd.concat([kept, test])[list(SPLIT_TABLE_COLUMNS)].to_numpy().tolist())
    return path


@flow(name="learning-curve", log_prints=True)
def learning_curve_flow(request: ProtocolRequest, points: list[tuple[int, int]]) -> list[dict]:
    """Train ``request.model`` on ``n`` tracks per genre with seed ``s`` for each ``(n, s)`` of ``points``; test cross-artist.

    Returns:
        One row per point (see :data:`COLUMNS`, without the settings and hardware).
    """
    cfg, model, device, work = request.pipeline_config(), request.model, request.device, Path(request.work_dir)
    dataset, cross = download_dataset(request.source, str(work)), download_dataset(request.cross_artist, str(work))
    plan = plan_protocol(dataset["manifest"], cross["manifest"], 2, request.val_fraction, 0, str(work / "protocol"))
    cross_csv = next(e["table"] for e in plan["evaluations"] if e["name"] == protocol.CROSS_ARTIST)
    cfg, cache_root = cfg.with_labels(plan["labels"]), str(work / "features")
    planned = plan_log_mels(plan["all"], cfg.features, cache_root)
    chunks = [compute_log_mels(c, cfg.features, cache_root, request.feature_backend, device) for c in planned["chunks"]]
    summarize_log_mels(planned, chunks, request.feature_backend, device)
    context = {"experiment": request.experiment, "device": device, "manifest": dataset["manifest"]}
    context["weights"] = prepare_pretrained(cfg, str(work))
    rows = []
    for n, seed in points:
        point_cfg = request.model_copy(update={"seed": seed}).pipeline_config().with_labels(plan["labels"])
        table = subset_table(cross_csv, n, seed, request.val_fraction, work / "learning-curve")
        info = {"source": request.source, "cross_artist": request.cross_artist, "tracks_per_label": n}
        context["info"] = info | {"device": device}
        parent = start_protocol_run(point_cfg, model, context["info"], request.experiment)
        ev = {"name": f"cross-artist-{n}-per-label", "table": str(table)}  # not "cross-artist": no speed run
        try:
            result = protocol_evaluation(ev, point_cfg, model, parent, cache_root, str(work), context)
        except BaseException:
            end_mlflow_run(parent, "FAILED")
            raise
        end_mlflow_run(parent)
        rows.append(_row(model, n, seed, pd.read_csv(table), result))
        print(f"{n} tracks per label, seed {seed}: cross-artist accuracy {rows[-1]['cross_artist_accuracy']:.3f}")
    return rows


def _row(model: str, n: int, seed: int, table: pd.DataFrame, result: dict) -> dict:
    test, train = result["test"], table[table["split"] == "train"]
    return {
        "model": model,
        "tracks_per_label": n,
        "train_tracks_per_label": round(len(train) / train["genre"].nunique(), 2),
        "seed": seed,
        "cross_artist_accuracy": test["test/track_accuracy"],
        "cross_artist_macro_f1": test["test/macro_f1"],
        "cross_artist_selective_accuracy": test.get("test/selective_accuracy"),
        "cross_artist_uncertain_share": test.get("test/uncertain_share"),
        "train_seconds": result["training"]["train_seconds"],
        "run_id": result["run_id"],
    }


def markdown(table: pd.DataFrame, command: str) -> str:
    """The learning-curve table: one row per model, settings and size, mean ± sample std over its seeds."""
    lines = [
        "## Learning curve: tagged tracks per label",
        "",
        f"Last written by `{command}`; every run's row is in `learning_curve.csv`.",
        "",
        "Trained on `n` tracks per genre of gtzan_mini (drawn per seed, nested: a seed's 4 tracks include its 2); "
        "a stratified 20% of them (at least one per genre) only drives early stopping and calibration, so "
        "*trained on* is what the model learns from. Tested on the cross-artist clips (gtzan_excerpts: 2-3 s "
        "excerpts of tracks 00031-00040, mostly other artists). Selective accuracy: clips whose top probability "
        f"reaches scoring's threshold {UNCERTAIN_BELOW}; uncertain: the share below it. "
        f"Hardware: {table['hardware'].iloc[0] if len(table) else '–'}.",
        "",
        "| model | tracks per label | trained on | seeds | cross-artist accuracy | macro-F1 | selective accuracy "
        "| uncertain | training (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (model, n, *_), g in table.groupby([SETTINGS[0], "tracks_per_label", *SETTINGS[1:]], sort=True):
        lines.append(
            f"| {model} | {n} | {g['train_tracks_per_label'].mean():g} | {len(g)} "
            f"| {_mean_std(g['cross_artist_accuracy'])} | {_mean_std(g['cross_artist_macro_f1'])} "
            f"| {_mean_std(g['cross_artist_selective_accuracy'])} | {_mean_std(g['cross_artist_uncertain_share'])} "
            f"| {_mean_std(g['train_seconds'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def with_section(results_md: str, section: str) -> str:
    """``results_md`` with the text between :data:`BEGIN` and :data:`END` replaced by ``section`` (appended if absent)."""
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in results_md and END in results_md:
        return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", lambda _: block, results_md, flags=re.S)
    return results_md.rstrip("\n") + "\n\n" + block


def main(argv: Sequence[str] | None = None) -> None:
    """Run the missing points of the learning curve and write the CSV and Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=TRAIN_SOURCE, help="training collection (folder, archive or URL)")
    parser.add_argument("--cross-artist", default=CROSS_ARTIST_SOURCE, help="labelled clips by other artists")
    parser.add_argument("--model", default=ProtocolRequest.model_fields["model"].default, help="zoo architecture")
    parser.add_argument("--sizes", default="2,4,6,8,10", help="comma-separated tracks per label")
    parser.add_argument("--seeds", default="42,43,44", help="comma-separated seeds (each draws its own subsets)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs per training (early stopping)")
    parser.add_argument("--mixup-alpha", type=float, default=TrainConfig.mixup_alpha, help="mixup (0: off)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--work-dir", default="work", help="downloads, log-mel cache, checkpoints")
    parser.add_argument("--experiment", default="genre-crnn-learning-curve", help="MLflow experiment")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder of the tables and RESULTS.md")
    args = parser.parse_args(argv)
    request = ProtocolRequest(
        source=args.source, cross_artist=args.cross_artist, work_dir=args.work_dir, model=args.model, folds=2,
        epochs=args.epochs, mixup_alpha=args.mixup_alpha, device=args.device, experiment=args.experiment,
    )  # fmt: skip
    csv = args.out / "learning_curve.csv"
    table = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)
    settings = {"model": args.model, "epochs": args.epochs, "mixup_alpha": args.mixup_alpha, "device": args.device}
    same = np.logical_and.reduce([table[k] == v for k, v in settings.items()]) if len(table) else np.zeros(0, bool)
    done = set(zip(table[same]["tracks_per_label"], table[same]["seed"]))
    points = [(int(n), int(s)) for s in args.seeds.split(",") for n in args.sizes.split(",")]
    todo = [p for p in points if p not in done]
    print(f"{len(points) - len(todo)} of {len(points)} points already in {csv}")
    command = " ".join(["python -m bench.learning_curve", *(sys.argv[1:] if argv is None else argv)])
    for point in todo:  # one flow run per point: each finished point is saved before the next starts
        (row,) = learning_curve_flow(request, [point])
        row |= settings | {"hardware": hardware(args.device)}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True).reindex(columns=COLUMNS)
        table = table.sort_values(["model", "tracks_per_label", "seed"]).reset_index(drop=True)
        write_text_atomic(csv, table.to_csv(index=False))
        write_tables(table, args.out, command)
    print(write_tables(table, args.out, command))


def write_tables(table: pd.DataFrame, out: Path, command: str) -> str:
    """Write the Markdown table to ``out/learning_curve.md`` and into ``out/RESULTS.md``'s section; return it."""
    section = markdown(table, command)
    write_text_atomic(out / "learning_curve.md", section)
    results = out / "RESULTS.md"
    write_text_atomic(results, with_section(results.read_text() if results.exists() else "", section))
    return section


if __name__ == "__main__":
    main()
