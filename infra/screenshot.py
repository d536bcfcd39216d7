"""A PNG of a web page as a browser renders it (the Prefect or MLflow UI of the team stack), with headless Chromium.

    .venv/bin/python -m infra.screenshot http://127.0.0.1:4200/runs prefect-runs.png

The page's scripts run before the picture is taken (Chromium's virtual time budget), so single-page
apps such as the Prefect UI show their data, not a loading spinner. Chromium is the system's
(``apt-get install chromium`` on Debian/Ubuntu); :data:`BROWSERS` lists the names looked for.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from crnn.atomic import atomic_path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executables tried in this order on ``PATH``."""
WIDTH, HEIGHT = 1600, 1000
"""Default window size in pixels."""
WAIT_S = 40
"""Default seconds of page time the scripts get before the picture."""


class ScreenshotError(RuntimeError):
    """No browser was found, or it failed; the message says which and why in one line."""


def browser() -> str:
    """The path of the first of :data:`BROWSERS` on ``PATH``.

    Raises:
        ScreenshotError: none is installed.
    """
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        raise ScreenshotError(f"no headless browser found ({', '.join(BROWSERS)}): apt-get install chromium")
    return found


def _run(url: str, args: list[str], wait_s: float, timeout_s: float) -> str:
    """Run the browser headless on ``url`` with ``args``; return its standard output."""
    with tempfile.TemporaryDirectory(prefix="screenshot-profile-") as profile:
        cmd = [
            browser(),
            "--headless",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",  # a private profile: no clash with a running browser
            f"--virtual-time-budget={int(wait_s * 1000)}",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium's sandbox refuses root
            *args,
            url,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"{url}: the browser did not finish in {timeout_s:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ScreenshotError(f"{url}: the browser failed (exit {done.returncode}): {last}")
    return done.stdout


def screenshot(
    url: str,
    out: str | Path,
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    wait_s: float = WAIT_S,
    timeout_s: float = 120,
) -> Path:
    """Render ``url`` in a ``width`` x ``height`` (in pixels) window and write it to ``out`` (PNG, atomically).

    Args:
        url: the page.
        out: the PNG file to write (its folder is created).
        width: window width in pixels.
        height: window height in pixels.
        wait_s: seconds of page time the scripts get before the picture (virtual time: idle waits are skipped).
        timeout_s: wall-clock seconds before the browser is given up.

    Returns:
        ``out``.

    Raises:
        ScreenshotError: no browser, it failed or timed out, or it wrote no picture.
    """
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        _run(url, [f"--window-size={width},{height}", f"--screenshot={tmp}"], wait_s, timeout_s)
        if tmp.stat().st_size == 0:
            raise ScreenshotError(f"{url}: the browser wrote no picture")
    return out


def rendered_dom(url: str, *, wait_s: float = WAIT_S, timeout_s: float = 120) -> str:
    """The page's HTML after its scripts ran for ``wait_s`` seconds of page time (what a screenshot shows, as text).

    Raises:
        ScreenshotError: as for :func:`screenshot`.
    """
    return _run(url, ["--dump-dom"], wait_s, timeout_s)


def main(argv: list[str] | None = None) -> None:
    """``python -m infra.screenshot URL OUT.png [--width W] [--height H] [--wait-s S]``; one line on error."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the page, e.g. the Prefect UI's flow runs: ${PREFECT_API_URL%%/api}/runs")
    parser.add_argument("out", type=Path, help="the PNG file to write")
    parser.add_argument("--width", type=int, default=WIDTH, help="window width in pixels (default %(default)s)")
    parser.add_argument("--height", type=int, default=HEIGHT, help="window height in pixels (default %(default)s)")
    parser.add_argument(
        "--wait-s", type=float, default=WAIT_S, help="seconds the page's scripts get (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://", "file://")):
        parser.error(f"url: {args.url!r} is not an http(s):// or file:// URL")
    if args.width <= 0 or args.height <= 0 or args.wait_s < 0:
        parser.error("--width and --height must be positive, --wait-s at least 0")
    try:
        print(screenshot(args.url, args.out, width=args.width, height=args.height, wait_s=args.wait_s))
    except (ScreenshotError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
