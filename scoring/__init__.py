"""Batch scoring of a music library: listing, the state store, per-file preparation, tags, results tables, the library report.

The engine behind ``batch-score-flow``, free of Prefect, Typer and MLflow (``tasks/score.py`` wraps it
in tasks; the model is resolved by ``infra.registry``). It uses ``crnn/`` for decoding and prediction
and ``infra.storage`` for S3 and atomic writes.
"""
