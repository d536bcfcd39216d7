"""What scoring fewer segments per track costs in accuracy: the ``max_segments`` choice of the musicnn models.

    .venv/bin/python -m bench.segment_cap --caps 0,8,6,5,4,3,2,1 --repeats 5

Each track of ``--data`` (30 s GTZAN tracks: 10 non-overlapping 3 s segments) is embedded once
per segment by the frozen pretrained musicnn (the 200-d penultimate layer that ``musicnn-linear``
reads). Over ``--repeats`` shuffled stratified 5-fold splits at track level, a multinomial logistic
regression (the ``musicnn-linear`` head: one linear layer on that embedding) is trained on every
segment of the training tracks; each test track is then scored on at most ``cap`` segments, picked
as scoring picks them (``crnn.features.scored_segment_starts``), its probabilities the mean over
those segments. The script prints, per cap, the track accuracy (mean ± std over folds) and the
share of tracks whose genre equals the one from every segment (cap 0). Splits inside gtzan_mini
share artists, so the accuracy itself is optimistic; the differences between caps are the point.
Converted musicnn weights come from ``$GENRE_CRNN_PRETRAINED_DIR`` (converted on first use).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from crnn.audio import load_audio
from crnn.config import PipelineConfig
from crnn.features import scored_segment_starts, segment_log_mel
from crnn.zoo import build_model
from infra.pretrained import cache_dir, ensure_musicnn_weights


def embed_tracks(paths: list[Path], checkpoint: str) -> list[np.ndarray]:
    """Penultimate musicnn embeddings of every segment of each track: a list of (n_segments, 200) arrays."""
    cfg = PipelineConfig.from_options(architecture="musicnn-linear", pretrained=checkpoint, max_segments=0)
    model = build_model(cfg)
    model.load_pretrained(ensure_musicnn_weights(checkpoint, cache_dir(os.environ.get("GENRE_CRNN_WORK", "work"))))
    model.eval()
    out = []
    with torch.inference_mode():
        for path in paths:
            segments = segment_log_mel(
                model.frontend(torch.from_numpy(load_audio(path, cfg.features.sample_rate))), cfg.features
            )
            out.append(torch.cat([model.embedding(segments[i : i + 2]) for i in range(0, len(segments), 2)]).numpy())
    return out


def main(argv: list[str] | None = None) -> None:
    """Embed the tracks, then print accuracy and agreement with every segment per cap."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/gtzan_mini/genres"), help="genre folders")
    parser.add_argument("--caps", default="0,8,6,5,4,3,2,1", help="comma-separated max_segments (0: all)")
    parser.add_argument("--repeats", type=int, default=5, help="shuffled 5-fold splits")
    parser.add_argument("--checkpoint", default="MSD_musicnn")
    args = parser.parse_args(argv)
    paths = sorted(args.data.rglob("*.wav"))
    genres = sorted({p.parent.name for p in paths})
    labels = np.array([genres.index(p.parent.name) for p in paths])
    embeddings = embed_tracks(paths, args.checkpoint)
    base = PipelineConfig.from_options(architecture="musicnn-linear").features
    caps = [int(c) for c in args.caps.split(",")]
    acc: dict[int, list[float]] = {c: [] for c in caps}
    agree: dict[int, list[float]] = {c: [] for c in caps}
    for repeat in range(args.repeats):
        folds = StratifiedKFold(5, shuffle=True, random_state=repeat).split(np.zeros(len(labels)), labels)
        for train, test in folds:
            x = np.concatenate([embeddings[i] for i in train])
            y = np.concatenate([[labels[i]] * len(embeddings[i]) for i in train])
            clf = LogisticRegression(max_iter=2000, C=0.1).fit(x, y)
            predictions = {}
            for cap in caps:
                cfg = dataclasses.replace(base, max_segments=cap)
                picked = []
                for i in test:
                    n = len(embeddings[i])
                    # a track of exactly n non-overlapping segments: segment k starts at k * hop_frames
                    rows = [s // base.hop_frames for s in scored_segment_starts(n * base.segment_frames, cfg)]
                    picked.append(clf.predict_proba(embeddings[i][rows]).mean(axis=0).argmax())
                predictions[cap] = np.array(picked)
                acc[cap].append(float((predictions[cap] == labels[test]).mean()))
            for cap in caps:
                agree[cap].append(float((predictions[cap] == predictions[caps[0]]).mean()))
    print(f"{len(paths)} tracks, {args.repeats} x 5-fold, segments per track {sorted({len(e) for e in embeddings})}")
    print(f"{'max_segments':>12s}  track accuracy   same genre as cap {caps[0]}")
    for cap in caps:
        print(f"{cap:12d}  {np.mean(acc[cap]):.3f} ± {np.std(acc[cap]):.3f}   {np.mean(agree[cap]):.3f}")


if __name__ == "__main__":
    main()
