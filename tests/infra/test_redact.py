"""infra.redact: credentials in URIs never survive, everything else does."""

from __future__ import annotations

import os

import pytest

from infra.redact import SECRET_URIS_ENV, conceal, redact, reveal


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


def test_conceal_keeps_the_full_uri_in_the_environment_for_reveal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_URIS_ENV, "")
    uri, other = "http://u:pw1@h/x.tar.gz?token=t", "s3://b/k.tar.gz?X-Amz-Signature=s"
    hidden = conceal(uri)
    assert hidden == "http://***@h/x.tar.gz?token=***" and conceal(uri) == hidden
    assert reveal(conceal(other)) == other and reveal(hidden) == uri
    assert os.environ[SECRET_URIS_ENV].splitlines() == [uri, other]
    assert conceal("../shared/data/gtzan_mini") == reveal("../shared/data/gtzan_mini") == "../shared/data/gtzan_mini"


def test_conceal_refuses_two_credentials_for_one_redacted_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_URIS_ENV, "http://u:pw1@h/x.tar.gz")
    with pytest.raises(ValueError, match="different credentials"):
        conceal("http://u:pw2@h/x.tar.gz")


@pytest.mark.parametrize("known", ["", "http://u:pw1@h/x.tar.gz\nhttp://v:pw2@h/x.tar.gz"])
def test_reveal_without_one_full_uri_names_the_variable(monkeypatch: pytest.MonkeyPatch, known: str) -> None:
    monkeypatch.setenv(SECRET_URIS_ENV, known)
    with pytest.raises(ValueError, match=SECRET_URIS_ENV) as info:
        reveal("http://***@h/x.tar.gz")
    assert "pw" not in str(info.value) and "\n" not in str(info.value)
