"""genre-crnn core: audio decoding, log-mel features, models, training and evaluation.

Pure PyTorch / torchaudio / numpy (plus soundfile and librosa for decoding and the CPU
feature path). Nothing in this package imports MLflow, Prefect or Typer.
"""

GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
"""The 10 GTZAN genres, in label-index order (index ``i`` is class ``i``)."""
