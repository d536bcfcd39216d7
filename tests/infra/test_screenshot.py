"""infra.screenshot: one-line errors, and a page rendered by its scripts into a PNG of the window's size."""

from __future__ import annotations

import struct

import pytest

from infra import screenshot


def test_a_bad_url_is_a_one_line_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        screenshot.main(["ftp://example.org/", "out.png"])
    assert exc.value.code == 2 and "url: 'ftp://example.org/' is not an http(s)://" in capsys.readouterr().err


def test_a_missing_browser_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        screenshot.main(["http://127.0.0.1:9/", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count("\n") == 1 and "apt-get install chromium" in err
    assert not (tmp_path / "out.png").exists()


def test_a_page_is_pictured_after_its_scripts_ran(tmp_path) -> None:
    try:
        screenshot.browser()
    except screenshot.ScreenshotError as err:
        pytest.skip(str(err))
    page = tmp_path / "page.html"
    page.write_text("<h1 id=t>static</h1><script>setTimeout(() => { t.textContent = 'ren' + 'dered' }, 500)</script>")
    out = screenshot.screenshot(page.as_uri(), tmp_path / "shots" / "page.png", width=320, height=200, wait_s=2)
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (320, 200)
    assert [p.name for p in out.parent.iterdir()] == ["page.png"]  # written atomically: no temporary left
    dom = screenshot.rendered_dom(page.as_uri(), wait_s=2)
    assert "rendered" in dom and "static" not in dom
