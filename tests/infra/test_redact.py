"""infra.redact: credentials in URIs never survive, everything else does."""

from __future__ import annotations

import pytest

from infra.redact import redact


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://user:PW@host/x.tar.gz", "http://***@host/x.tar.gz"),
        ("https://user:p@ss:w0rd@host:8443/a/b.zip", "https://***@host:8443/a/b.zip"),
        ("https://token@host/x.tar", "https://***@host/x.tar"),
        (
            "https://b.s3.amazonaws.com/g.tar.gz?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc123",
            "https://b.s3.amazonaws.com/g.tar.gz?X-Amz-Algorithm=AWS4&X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("https://h/x.zip?token=t0k&name=gtzan", "https://h/x.zip?token=***&name=gtzan"),
        (
            "https://h/x.zip?key=k&sig=s&password=p&access_token=a",
            "https://h/x.zip?key=***&sig=***&password=***&access_token=***",
        ),
        ("https://h/x.zip?v=1#frag", "https://h/x.zip?v=1#frag"),
        ("s3://bucket/music/a@b.flac", "s3://bucket/music/a@b.flac"),
        ("/home/me/music/x@y.wav", "/home/me/music/x@y.wav"),
        ("../shared/data/gtzan_mini", "../shared/data/gtzan_mini"),
    ],
)
def test_redact(uri: str, expected: str) -> None:
    assert redact(uri) == expected
    assert redact(redact(uri)) == expected


def test_redact_inside_a_message() -> None:
    msg = "Downloading http://u:secretpw@h/x.tar.gz failed: HTTPConnectionPool: url: /x.tar.gz?token=zzz (refused)"
    out = redact(msg)
    assert "secretpw" not in out and "zzz" not in out and "h/x.tar.gz" in out
