"""``library-eval-flow``: how good the model is on a user's own music, judged by the files' own genre tags."""

from __future__ import annotations

from prefect import flow

from crnn.requests import LibraryEvalRequest
from flows.batch_score_flow import batch_score_flow
from flows.parameters import Deployed
from tasks.library_eval import evaluate_library_task


@flow(name="library-eval-flow", log_prints=True)
def library_eval_flow(request: Deployed[LibraryEvalRequest]) -> dict:
    """Score ``request.library`` (reusing the output folder's state store; tags untouched), then compare with its tags.

    Returns the evaluation run's id, its ``library/*`` metrics, the labels the model lacks, the
    exclusion counts and the report paths.
    """
    scored = batch_score_flow(request.score_request())
    return evaluate_library_task(
        request.output_dir, scored, request.label_map, request.uncertain_below, request.experiment
    )
