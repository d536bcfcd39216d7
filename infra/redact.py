"""Hide credentials in URIs before they reach logs, MLflow params and datasets, or run summaries.

``user:password@`` userinfo and the values of secret-looking query parameters (``X-Amz-Signature``,
``token``, ``key``, ``password``, ``sig``, ...) become ``***``; everything else is kept, so the
redacted URI still names the host and the file. The function works on whole messages too.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
_USERINFO = re.compile(r"(?<=://)[^/\s?#]*@")  # greedy: up to the last '@' of the authority
_SECRET_NAME = (
    r"[\w.-]*(?:token|secret|passw|signature|credential|api_?key|private)[\w.-]*"
    r"|key|sig|pwd|auth|authorization|session"
)
_SECRET_QUERY = re.compile(rf"(?i)([?&;](?:{_SECRET_NAME})=)[^&#\s'\"]*")


def redact(text: str) -> str:
    """``text`` (a URI or a message holding URIs) with userinfo and secret query values replaced by ``***``."""
    return _SECRET_QUERY.sub(rf"\g<1>{MASK}", _USERINFO.sub(f"{MASK}@", text))


class RedactFilter(logging.Filter):
    """A logging filter that redacts each record's formatted message (add it to a logger or handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted form; always keep the record."""
        record.msg, record.args = redact(record.getMessage()), None
        return True
