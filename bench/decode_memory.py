"""Peak memory of decoding one long many-channel high-rate file (``crnn.audio.load_audio``), in a fresh process.

    .venv/bin/python -m bench.decode_memory --path /tmp/surround.flac             # 8 ch, 192 kHz, 600 s
    .venv/bin/python -m bench.decode_memory --path x.flac --seconds 60 --channels 2

The file is written once (block by block: one ``soundfile.write`` of 600 s x 8 channels at 192 kHz has
crashed) and reused when it exists. The decode runs in a child process that first decodes a tiny file
(so imports and libraries count in the baseline), then the big one; it prints its peak resident set
size before and after, and the increase. The peak is Linux's ``VmHWM`` of ``/proc/self/status``:
``getrusage``'s ``ru_maxrss`` is no use in a child, as it starts from the parent's peak (a pytest
process with torch loaded would hide the whole decode).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

WRITE_BLOCK_S = 5.0
"""Seconds written per ``SoundFile.write`` call."""

_CHILD = """
import json, sys, tempfile, time
import numpy as np, soundfile as sf
from crnn.audio import load_audio

def peak_mib():  # VmHWM: this process's own peak; ru_maxrss keeps the parent's across fork and exec
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

path, rate = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    sf.write(f"{tmp}/warm.flac", np.zeros((4800, 2), dtype=np.float32), 48000)
    load_audio(f"{tmp}/warm.flac", rate)
before = peak_mib()
start = time.perf_counter()
mono = load_audio(path, rate)
seconds = time.perf_counter() - start
after = peak_mib()
print(json.dumps({"baseline_mib": round(before, 1), "peak_mib": round(after, 1), "increase_mib": round(after - before, 1),
                  "output_mib": round(mono.nbytes / 2**20, 1), "decode_s": round(seconds, 1)}))
"""


def write_test_file(path: Path, *, channels: int, sample_rate: int, seconds: float) -> Path:
    """Write a FLAC of one sine per channel (100 Hz apart, amplitude 0.3, 16-bit), block by block; return ``path``."""
    block = int(WRITE_BLOCK_S * sample_rate)
    freqs = 220.0 + 100.0 * np.arange(channels)
    total = int(seconds * sample_rate)
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, format="FLAC", subtype="PCM_16") as f:
        for start in range(0, total, block):
            t = (start + np.arange(min(block, total - start)))[:, None] / sample_rate
            f.write((0.3 * np.sin(2 * np.pi * freqs * t)).astype(np.float32))
    return path


def measure(path: Path, sample_rate: int) -> dict:
    """Decode ``path`` to mono at ``sample_rate`` Hz in a fresh process; its peak RSS figures (in MiB) and time (in s)."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(sample_rate)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Write the file if missing, decode it in a child process, print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, required=True, help="FLAC to decode (written first if missing).")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--native-rate", type=int, default=192_000, help="Sample rate of the file (in Hz).")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--sample-rate", type=int, default=22_050, help="Decoding target rate (in Hz).")
    args = parser.parse_args()
    if not args.path.exists():
        write_test_file(args.path, channels=args.channels, sample_rate=args.native_rate, seconds=args.seconds)
    info = sf.info(str(args.path))
    figures = measure(args.path, args.sample_rate)
    print(
        json.dumps(
            {"file": str(args.path), "bytes": args.path.stat().st_size, "channels": info.channels}
            | {"native_rate": info.samplerate, "seconds": info.duration, "sample_rate": args.sample_rate}
            | figures
        )
    )


if __name__ == "__main__":
    main()
