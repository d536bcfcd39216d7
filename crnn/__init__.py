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
"""The 10 GTZAN genres, in GTZAN's label order: the labels of GTZAN file names and of models trained on GTZAN.

A trained model's labels are ``ModelConfig.labels``, read from its checkpoint; this list is only the
dataset parser's default and the fallback for checkpoints written before labels were saved."""
