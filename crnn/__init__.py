"""genre-crnn core: audio decoding, log-mel features, models, training and evaluation.

Pure PyTorch / torchaudio / numpy, plus soundfile and PyAV for decoding (soxr to resample), librosa
for the CPU feature path, scikit-learn for the baseline and the protocol's folds, and cachetools
(``tests/test_layering.py`` holds the list). Nothing in this package imports MLflow, Prefect or Typer.
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
