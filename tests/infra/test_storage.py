"""Tests for infra.storage: the one S3 URI parser and the one S3 client factory."""

from __future__ import annotations

import threading

import pytest

from infra import storage
from infra.storage import S3UriError, is_s3, split_s3_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/music/a b.mp3", ("bucket", "music/a b.mp3")),
        ("s3://bucket/odd#name?.mp3", ("bucket", "odd#name?.mp3")),  # keys are taken verbatim
    ],
)
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["/music", "s3:/bucket/x", "s3://", "s3:///key", "http://bucket/key"])
def test_split_s3_uri_refuses_what_is_not_s3(uri: str) -> None:
    with pytest.raises(S3UriError, match="expected s3://bucket/prefix"):
        split_s3_uri(uri)


def test_split_s3_uri_can_require_a_key() -> None:
    with pytest.raises(S3UriError, match="expected s3://bucket/key"):
        split_s3_uri("s3://bucket/", need_key=True)
    assert split_s3_uri("s3://bucket/k", need_key=True) == ("bucket", "k")
    assert is_s3("s3://b") and not is_s3("/s3://b")


def test_s3_client_is_cached_per_thread_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    first = storage.s3_client()
    assert storage.s3_client() is first
    assert first.meta.endpoint_url == "http://127.0.0.1:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")  # another endpoint: another client
    assert storage.s3_client().meta.endpoint_url == "http://127.0.0.1:2"
    explicit = storage.s3_client(endpoint_url="http://127.0.0.1:3", credentials={"AWS_ACCESS_KEY_ID": "x"})
    assert explicit.meta.endpoint_url == "http://127.0.0.1:3" and explicit is not first
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(storage.s3_client()))
    thread.start()
    thread.join()
    assert other[0] is not storage.s3_client()  # boto3 clients are not shared between threads
