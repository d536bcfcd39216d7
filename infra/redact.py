"""Hide credentials in URIs before they reach logs, MLflow params and datasets, or run summaries.

``user:password@`` userinfo and the values of secret-looking query parameters (``X-Amz-Signature``,
``token``, ``key``, ``password``, ``sig``, ...) become ``***``; everything else is kept, so the
redacted URI still names the host and the file. The function works on whole messages too.

Prefect stores every flow run's parameters in its database, so an entry point never hands a flow a
URI with credentials: :func:`conceal` gives the flow the redacted URI and keeps the real one in this
process's environment (``$GENRE_CRNN_SECRET_URIS``, inherited by the processes it starts), and the
task that opens the URI gets it back with :func:`reveal`. A worker or ``prefect deployment run`` of a
redacted URI needs the real one in that variable of the worker's environment.
"""

from __future__ import annotations

import logging
import os
import re

MASK = "***"
SECRET_URIS_ENV = "GENRE_CRNN_SECRET_URIS"
"""Environment variable: the full URIs (one a line) whose redacted forms flows receive as parameters."""
_USERINFO = re.compile(r"(?<=://)[^/\s?#]*@")  # greedy: up to the last '@' of the authority
_SECRET_NAME = (
    r"[\w.-]*(?:token|secret|passw|signature|credential|api_?key|private)[\w.-]*"
    r"|key|sig|pwd|auth|authorization|session"
)
_SECRET_QUERY = re.compile(rf"(?i)([?&;](?:{_SECRET_NAME})=)[^&#\s'\"]*")


def redact(text: str) -> str:
    """``text`` (a URI or a message holding URIs) with userinfo and secret query values replaced by ``***``."""
    return _SECRET_QUERY.sub(rf"\g<1>{MASK}", _USERINFO.sub(f"{MASK}@", text))


def _secret_uris() -> list[str]:
    return [u for u in os.environ.get(SECRET_URIS_ENV, "").splitlines() if u.strip()]


def conceal(uri: str) -> str:
    """``redact(uri)``, with the full ``uri`` added to ``$GENRE_CRNN_SECRET_URIS`` when the two differ.

    Raises:
        ValueError: another URI with the same redacted form is already there (``reveal`` could not choose).
    """
    hidden = redact(uri)
    if hidden == uri:
        return uri
    known = _secret_uris()
    if any(redact(u) == hidden and u != uri for u in known):
        raise ValueError(f"{hidden}: two URIs with different credentials redact to this one; use one per process")
    if uri not in known:
        os.environ[SECRET_URIS_ENV] = "\n".join([*known, uri])
    return hidden


def reveal(uri: str) -> str:
    """The full URI behind a redacted ``uri`` (from ``$GENRE_CRNN_SECRET_URIS``); any other ``uri`` unchanged.

    Raises:
        ValueError: ``uri`` holds ``***`` but no URI of the variable redacts to it (or several do).
    """
    if MASK not in uri:
        return uri
    matches = {u for u in _secret_uris() if redact(u) == uri}
    if len(matches) == 1:
        return matches.pop()
    problem = "several full URIs there redact to it" if matches else "its full form is missing"
    raise ValueError(f"{uri}: credentials redacted and {problem}; set ${SECRET_URIS_ENV} (one full URI a line)")


class RedactFilter(logging.Filter):
    """A logging filter that redacts each record's formatted message (add it to a logger or handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted form; always keep the record."""
        record.msg, record.args = redact(record.getMessage()), None
        return True
