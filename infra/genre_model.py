"""MLflow pyfunc wrapper for genre-crnn, logged as "models from code".

The model takes a DataFrame whose rows are either audio file paths (column ``path``) or
waveforms with their rate (columns ``waveform``: list of samples in [-1, 1], mono, and
``sample_rate`` in Hz). It returns one row per input: ``genre`` (top class) and
``prob_<genre>`` for each class the checkpoint names (``model.labels``; GTZAN's ten for checkpoints
from before labels). Preprocessing (resampling, log-mel, segmentation) comes
from the config inside the checkpoint artifact, so it cannot drift from training.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel


class GenreModel(PythonModel):
    """Whole-track genre classifier over a :class:`crnn.models.GenreNet` checkpoint."""

    def load_context(self, context) -> None:
        """Load the checkpoint artifact ``checkpoint`` on CUDA when available, else CPU."""
        from crnn.inference import load_checkpoint

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.cfg = load_checkpoint(context.artifacts["checkpoint"], device)
        self.genres = list(self.cfg.model.labels)

    def _probs(self, row: pd.Series) -> np.ndarray:
        from crnn.inference import predict_file, predict_waveform

        path = row.get("path")
        if isinstance(path, str) and path:
            return predict_file(self.model, path)[0]
        waveform, rate = row.get("waveform"), row.get("sample_rate")
        if waveform is None or rate is None or pd.isna(rate):
            raise ValueError("each row needs either 'path' or both 'waveform' and 'sample_rate'")
        return predict_waveform(self.model, np.asarray(waveform, dtype=np.float32), int(rate))[0]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Genre and per-genre probabilities for every row of ``model_input``."""
        probs = np.stack([self._probs(row) for _, row in model_input.iterrows()])
        out = pd.DataFrame(probs, columns=[f"prob_{g}" for g in self.genres])
        out.insert(0, "genre", [self.genres[i] for i in probs.argmax(axis=1)])
        return out


mlflow.models.set_model(GenreModel())
