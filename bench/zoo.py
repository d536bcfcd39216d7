"""Model zoo benchmark: every architecture and the classical baseline under the evaluation protocol.

    .venv/bin/python -m bench.zoo --source ../shared/data/gtzan_mini --cross-artist ../shared/data/gtzan_excerpts

Runs ``protocol-flow`` once per model (cross-artist evaluation + stratified track-level k-fold,
each in nested MLflow runs under one parent run per model) and writes ``bench/results.csv`` and
``bench/RESULTS.md``: model, parameters, cross-artist accuracy and macro-F1, k-fold track
accuracy and macro-F1 (mean ± std), training time, scoring speed and the hardware. A model
whose row is already in the CSV with the same settings is not run again (``--rerun`` forces
it), so an interrupted benchmark resumes. ``--device cuda`` trains and scores on a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
from pathlib import Path

import pandas as pd
import torch

from crnn.atomic import write_text_atomic
from crnn.config import PROTOCOL_MODELS, UNCERTAIN_BELOW, TrainConfig, zoo_entry
from crnn.requests import CROSS_ARTIST_SOURCE, TRAIN_SOURCE, ProtocolRequest
from flows.protocol_flow import protocol_flow

COLUMNS = [
    "model", "seed", "parameters", "cross_artist_accuracy", "cross_artist_macro_f1", "cross_artist_ece",
    "cross_artist_selective_accuracy", "cross_artist_uncertain_share", "kfold_track_accuracy_mean",
    "kfold_track_accuracy_std", "kfold_macro_f1_mean", "kfold_macro_f1_std", "train_seconds", "tracks_per_s",
    "folds", "epochs", "mixup_alpha", "device", "hardware", "run_id",
]  # fmt: skip
SETTINGS = ["folds", "epochs", "mixup_alpha", "device"]
"""Columns that must match for rows to be compared (and averaged over seeds)."""


def hardware(device: str) -> str:
    """CPU model and core count, plus the GPU name when ``device`` is CUDA."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def run_model(model: str, seed: int, args: argparse.Namespace) -> dict:
    """One protocol-flow run; its summary as a table row."""
    s = protocol_flow(ProtocolRequest(
        source=args.source, cross_artist=args.cross_artist, work_dir=args.work_dir, model=model,
        folds=args.folds, epochs=args.epochs, mixup_alpha=args.mixup_alpha, seed=seed, device=args.device,
        experiment=args.experiment,
    ))  # fmt: skip
    return {
        "model": model,
        "seed": seed,
        "parameters": s["parameters"],
        "cross_artist_accuracy": s["cross_artist/accuracy"],
        "cross_artist_macro_f1": s["cross_artist/macro_f1"],
        "cross_artist_ece": s.get("cross_artist/ece"),
        "cross_artist_selective_accuracy": s.get("cross_artist/selective_accuracy"),
        "cross_artist_uncertain_share": s.get("cross_artist/uncertain_share"),
        "kfold_track_accuracy_mean": s["kfold/track_accuracy_mean"],
        "kfold_track_accuracy_std": s["kfold/track_accuracy_std"],
        "kfold_macro_f1_mean": s["kfold/macro_f1_mean"],
        "kfold_macro_f1_std": s["kfold/macro_f1_std"],
        "train_seconds": s["train_seconds"],
        "tracks_per_s": s["speed/tracks_per_s"],
        "folds": args.folds,
        "epochs": args.epochs,
        "mixup_alpha": args.mixup_alpha,
        "device": args.device,
        "hardware": hardware(args.device),
        "run_id": s["run_id"],
    }


def _mean_std(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model and settings: the mean ± sample std over its seeds of every figure."""
    rows = []
    for (model, *settings), group in table.groupby(["model", *SETTINGS], sort=False, dropna=False):
        row = {
            "model": model,
            **dict(zip(SETTINGS, settings)),
            "seeds": len(group),
            "parameters": group["parameters"].iloc[0],
        }
        for column in COLUMNS[3:14]:
            row[column] = _mean_std(group[column], 1 if column in ("train_seconds", "tracks_per_s") else 3)
        rows.append(row)
    return pd.DataFrame(rows)


def write_results_md(path: Path, zoo_table: str) -> None:
    """Write ``path`` as ``zoo_table`` followed by the sections other benches keep in it (between their markers).

    ``bench/learning_curve.py`` keeps its table between ``<!-- learning-curve:begin/end -->``; rewriting the
    zoo table must not drop it.
    """
    old = path.read_text() if path.exists() else ""
    blocks = [m.group(0) for m in re.finditer(r"<!-- ([\w-]+):begin -->\n.*?<!-- \1:end -->\n?", old, flags=re.S)]
    write_text_atomic(path, zoo_table.rstrip("\n") + "\n" + "".join("\n" + b for b in blocks))


def markdown(table: pd.DataFrame, args: argparse.Namespace) -> str:
    """The results table (mean ± std over seeds) with the data, the protocol and the hardware stated."""
    lines = [
        "# Model zoo benchmark",
        "",
        f"Last written by `python -m bench.zoo --seeds {args.seeds} --folds {args.folds} --epochs {args.epochs} "
        f"--device {args.device} --mixup-alpha {args.mixup_alpha}`; every run's row is in `results.csv`.",
        "",
        f"- **Data:** trained on `{args.source}`; cross-artist test on `{args.cross_artist}` "
        "(2-3 s excerpts of GTZAN tracks 00031-00040, mostly other artists; each excerpt is one input, "
        "looped up to the model's input length where the model needs a fixed one).",
        "- **Protocol:** cross-artist = train on the whole training collection (a stratified 20% of it only "
        "drives early stopping and the calibration temperature), clip accuracy and macro-F1 on the excerpts; "
        "ECE (10 bins) of the calibrated probabilities; selective accuracy = accuracy of the clips whose top "
        f"probability reaches scoring's default threshold {UNCERTAIN_BELOW}, uncertain = the share below it "
        "(not tagged). "
        "k-fold = stratified k-fold at track level inside the training collection (segments never cross folds), "
        "seeded, mean ± sample std over folds, then averaged over seeds. "
        "**The k-fold figure is artist-confounded** (GTZAN is ordered by artist, folds share artists); "
        "choose models by the cross-artist figure.",
        "- **Seeds:** each row is the mean ± sample std over its seeds (column `seeds`); one seed on 100 clips "
        "is about ±5 points, so single-seed rows are indicative only.",
        "- **Training:** early stopping on validation loss, Adam, SpecAugment (not on cached frozen embeddings), "
        "mixup as in the table; each architecture uses its seed's preprocessing; the `musicnn-*` models keep "
        "the pretrained musicnn layers frozen. Training time is the cross-artist training run; speed is whole "
        "30 s tracks decoded and scored one by one.",
        f"- **Hardware:** {table['hardware'].iloc[0] if len(table) else hardware(args.device)}.",
        "",
        "| model | seeds | folds | epochs | mixup | parameters | cross-artist accuracy | cross-artist macro-F1 "
        "| ECE | selective accuracy | uncertain | k-fold track accuracy (artist-confounded) | training (s) "
        "| scoring (tracks/s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary(table).to_dict("records"):
        lines.append(
            f"| {r['model']} | {r['seeds']} | {r['folds']} | {r['epochs']} "
            f"| {r['mixup_alpha'] if zoo_entry(r['model']).is_network else '–'} | {int(r['parameters']):,} "
            f"| {r['cross_artist_accuracy']} | {r['cross_artist_macro_f1']} | {r['cross_artist_ece']} "
            f"| {r['cross_artist_selective_accuracy']} | {r['cross_artist_uncertain_share']} "
            f"| {r['kfold_track_accuracy_mean']} | {r['train_seconds']} | {r['tracks_per_s']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the CSV and Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=TRAIN_SOURCE, help="training collection (folder, archive or URL)")
    parser.add_argument("--cross-artist", default=CROSS_ARTIST_SOURCE, help="labelled clips by other artists")
    parser.add_argument("--models", default=",".join(PROTOCOL_MODELS), help="comma-separated models to run")
    parser.add_argument("--seeds", default="42", help="comma-separated seeds; each model runs once per seed")
    parser.add_argument("--folds", type=int, default=5, help="k of the stratified k-fold")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs per training (early stopping)")
    parser.add_argument("--mixup-alpha", type=float, default=TrainConfig.mixup_alpha, help="mixup (0: off)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--work-dir", default="work", help="downloads, log-mel cache, checkpoints")
    parser.add_argument("--experiment", default="genre-crnn-zoo", help="MLflow experiment")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for results.csv and RESULTS.md")
    parser.add_argument("--rerun", action="store_true", help="run models whose rows already exist again")
    args = parser.parse_args(argv)
    csv = args.out / "results.csv"
    table = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)
    if "mixup_alpha" not in table:  # rows written before the option existed ran without mixup
        table.insert(COLUMNS.index("mixup_alpha"), "mixup_alpha", 0.0)
    if "seed" not in table:  # rows written before --seeds ran with the default seed
        table.insert(1, "seed", TrainConfig.seed)
    table = table.reindex(columns=COLUMNS)
    for model in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            same = (table["model"] == model) & (table["seed"] == seed)
            for name in SETTINGS:
                same &= table[name] == getattr(args, name)
            if same.any() and not args.rerun:
                print(f"{model}, seed {seed}: already in {csv}, skipped (--rerun runs it again)")
                continue
            row = run_model(model, seed, args)
            table = pd.concat([table[~same], pd.DataFrame([row])], ignore_index=True)
            order = {m: i for i, m in enumerate(PROTOCOL_MODELS)}
            table = table.sort_values(["model", "seed"], key=lambda c: c.map(order) if c.name == "model" else c)
            table = table.reset_index(drop=True)
            write_text_atomic(csv, table.to_csv(index=False))
            write_results_md(args.out / "RESULTS.md", markdown(table, args))
            print(f"{model}, seed {seed}: {row}")
    print((args.out / "RESULTS.md").read_text() if (args.out / "RESULTS.md").exists() else "no results")


if __name__ == "__main__":
    main()
