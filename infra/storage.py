"""Storage adapter: the one S3 client factory, the one ``s3://`` URI parser and the atomic file writer.

Every module that reads or writes S3 gets its client from :func:`s3_client` and splits URIs with
:func:`split_s3_uri`; every file written in place goes through :func:`atomic_path` /
:func:`atomic_open` (implemented in :mod:`crnn.atomic`, pure stdlib, so ``crnn/`` uses the same code).
boto3 is imported lazily: local folders, HTTP and files need no AWS stack.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from crnn.atomic import DEFAULT_MODE, atomic_open, atomic_path, commit, fsync_dir, write_text_atomic

__all__ = [
    "DEFAULT_MODE",
    "S3UriError",
    "atomic_open",
    "atomic_path",
    "commit",
    "fsync_dir",
    "is_s3",
    "s3_client",
    "split_s3_uri",
    "write_text_atomic",
]

S3_SCHEME = "s3://"
_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_REGION")
_local = threading.local()


class S3UriError(ValueError):
    """A string is not ``s3://bucket[/key]`` (callers re-raise it as their own error type)."""


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object or prefix (``s3://...``) rather than a local path."""
    return uri.startswith(S3_SCHEME)


def split_s3_uri(uri: str, *, need_key: bool = False) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key is taken verbatim (it may hold ``#``, ``?`` or ``%``).

    Args:
        uri: ``s3://bucket``, ``s3://bucket/prefix/`` or ``s3://bucket/key``.
        need_key: refuse a URI without a key (an object, not a prefix, is expected).

    Returns:
        The bucket name and the key or prefix (``""`` for a bare bucket).

    Raises:
        S3UriError: not an ``s3://`` URI, no bucket, or no key when ``need_key``.
    """
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
    if not is_s3(uri) or not bucket or (need_key and not key):
        raise S3UriError(f"{uri}: expected s3://bucket/{'key' if need_key else 'prefix'}")
    return bucket, key


def s3_client(*, endpoint_url: str | None = None, credentials: Mapping[str, str] | None = None):
    """A boto3 S3 client for this thread (boto3's default session is not thread-safe); cached per settings.

    Args:
        endpoint_url: an S3-compatible endpoint (MinIO, moto); ``None``: boto3's own choice, which
            honours ``AWS_ENDPOINT_URL``.
        credentials: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and optionally ``AWS_DEFAULT_REGION``
            to use instead of the environment's (e.g. the team stack creating its bucket).

    Returns:
        A ``botocore`` S3 client. Clients are reused per thread while the endpoint, the credentials and
        the ``AWS_*`` environment variables that select them stay the same.
    """
    creds = dict(credentials or {})
    key = (endpoint_url, tuple(sorted(creds.items())), tuple(os.environ.get(k) for k in _ENV_KEYS))
    clients = _local.__dict__.setdefault("clients", {})
    if key not in clients:
        import boto3  # only S3 users need the AWS stack; endpoint and credentials come from the environment

        session = boto3.session.Session(
            aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"),
            region_name=creds.get("AWS_DEFAULT_REGION"),
        )
        clients[key] = session.client("s3", endpoint_url=endpoint_url)
    return clients[key]
