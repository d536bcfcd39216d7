"""Decoding guards of crnn.audio on tiny synthetic files: truncated and streaming WAV headers, FIFOs and
devices, implausible sample rates, text files with audio suffixes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from crnn.audio import AudioDecodeError, audio_info, load_audio, non_regular_reason, wav_layout


def _wav(path: Path, seconds: float, sample_rate: int = 8000) -> Path:
    """A seeded noise WAV (16-bit mono)."""
    y = np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * sample_rate)).astype(np.float32)
    sf.write(path, y, sample_rate, subtype="PCM_16")
    return path


def cut_wav(path: Path, keep_fraction: float) -> Path:
    """Drop the end of a WAV's samples, leaving the header's sizes as they were (a lying header)."""
    data = path.read_bytes()
    start = data.index(b"data") + 8
    path.write_bytes(data[: start + int((len(data) - start) * keep_fraction)])
    return path


def streaming_wav(path: Path) -> Path:
    """Set a WAV's RIFF and data sizes to 0xFFFFFFFF, as a streaming encoder does."""
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    start = data.index(b"data")
    data[start + 4 : start + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_wav_shorter_than_its_header_is_truncated(tmp_path: Path) -> None:
    """A WAV holding 1 s of the 3 s its header promises fails as truncated (libsndfile alone reads 1 s)."""
    path = cut_wav(_wav(tmp_path / "short.wav", 3.0), 1 / 3)
    assert wav_layout(path).missing_data_bytes > 0
    with pytest.raises(AudioDecodeError, match=r"truncated: the header promises 3\.0 s, 1\.0 s decode"):
        load_audio(path, 8000)


def test_wav_missing_a_few_bytes_still_decodes(tmp_path: Path) -> None:
    """A WAV missing under 5 % of its data decodes (the same tolerance as other formats)."""
    path = cut_wav(_wav(tmp_path / "nearly.wav", 2.0), 0.99)
    assert load_audio(path, 8000).size > 0


def test_streaming_wav_header_is_not_truncation(tmp_path: Path) -> None:
    """RIFF and data sizes of 0xFFFFFFFF mean "to the end of the file": the layout says so."""
    path = streaming_wav(_wav(tmp_path / "stream.wav", 1.0))
    layout = wav_layout(path)
    assert layout.streaming and layout.missing_data_bytes == 0
    assert load_audio(path, 8000).size == 8000


def test_wav_layout_of_other_files(tmp_path: Path) -> None:
    """Files that are not RIFF/WAVE have no layout; a complete WAV misses nothing."""
    (tmp_path / "notes.wav").write_text("not a wav")
    assert wav_layout(tmp_path / "notes.wav") is None
    layout = wav_layout(_wav(tmp_path / "ok.wav", 1.0))
    assert (layout.missing_data_bytes, layout.block_align, layout.streaming) == (0, 2, False)
    assert layout.riff_bytes + 8 == layout.file_bytes


def _rate_wav(path: Path, sample_rate: int) -> Path:
    """A 1 s WAV whose header then claims ``sample_rate`` Hz (byte rate left as it was)."""
    data = bytearray(_wav(path, 1.0).read_bytes())
    data[24:28] = struct.pack("<I", sample_rate)
    path.write_bytes(bytes(data))
    return path


def test_fifo_and_device_fail_before_opening(tmp_path: Path) -> None:
    """A FIFO (which would block on open) and a symlink to /dev/zero fail at once, naming what they are."""
    fifo = tmp_path / "song.wav"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.flac"
    zero.symlink_to("/dev/zero")
    for path, kind in ((fifo, "a FIFO"), (zero, "a character device")):
        assert non_regular_reason(path) == f"not a regular file ({kind}); not opened"
        for read in (audio_info, lambda p: load_audio(p, 8000)):
            with pytest.raises(AudioDecodeError, match=kind):
                read(path)
    assert non_regular_reason(tmp_path / "missing.wav") is None
    assert non_regular_reason(_wav(tmp_path / "ok.wav", 0.1)) is None


@pytest.mark.parametrize("sample_rate", [1, 3999, 768_001])
def test_implausible_sample_rate_fails(tmp_path: Path, sample_rate: int) -> None:
    """A header claiming 1 Hz (or any rate outside 4-768 kHz) fails with the rate in the reason."""
    path = _rate_wav(tmp_path / "odd.wav", sample_rate)
    for read in (audio_info, lambda p: load_audio(p, 8000, max_duration_s=None)):
        with pytest.raises(AudioDecodeError, match=f"implausible sample rate {sample_rate} Hz"):
            read(path)


@pytest.mark.parametrize("name", ["notes.mp3", "notes.wav", "notes.flac"])
def test_text_file_with_an_audio_suffix(tmp_path: Path, name: str) -> None:
    """A text file named like audio is "not a decodable audio file", not a missing file or a pipe."""
    path = tmp_path / name
    path.write_text("these are my notes, not a song\n" * 20)
    for read in (audio_info, lambda p: load_audio(p, 8000)):
        with pytest.raises(AudioDecodeError, match="not a decodable audio file") as err:
            read(path)
        assert "pipe" not in err.value.reason and "does not exist" not in err.value.reason


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_multichannel_decode_is_blockwise_and_matches_a_whole_read(tmp_path: Path, suffix: str, monkeypatch) -> None:
    """An 8-channel file decodes to the same mono samples as mixing a whole read, without holding all channels."""
    import tracemalloc

    from crnn import audio

    rate, seconds = 48000, 12.0
    y = np.random.default_rng(4).uniform(-0.5, 0.5, (int(rate * seconds), 8)).astype(np.float32)
    path = tmp_path / f"surround{suffix}"
    sf.write(path, y, rate, subtype="PCM_16")
    whole = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
    monkeypatch.setattr(audio, "DECODE_BLOCK_FRAMES", 10_000)  # many blocks, one short last block
    tracemalloc.start()
    try:
        mono = load_audio(path, rate)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(mono, whole)
    all_channels = y.nbytes  # 18.4 MB: what a whole read holds at once
    assert peak < 0.3 * all_channels, f"peak {peak / 1e6:.1f} MB"


def test_header_only_wav_is_zero_length_not_truncated(tmp_path: Path) -> None:
    """A WAV cut right after its header has no samples: the plainer reason wins."""
    path = _wav(tmp_path / "full.wav", 1.0)
    (tmp_path / "header-only.wav").write_bytes(path.read_bytes()[:44])
    with pytest.raises(AudioDecodeError, match="zero-length audio"):
        load_audio(tmp_path / "header-only.wav", 8000)


def _write_m4a(path: Path, y: np.ndarray, sample_rate: int) -> None:
    """AAC in MP4 through PyAV, from float32 (time, channels) samples."""
    import av

    layout = {1: "mono", 2: "stereo"}[y.shape[1]]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=sample_rate, layout=layout)
        for i in range(0, len(y), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[i : i + 1024].T), format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize(
    ("suffix", "native_rate", "sample_rate"),
    [(".flac", 192_000, 22050), (".wav", 44100, 16000), (".wav", 8000, 22050), (".m4a", 48000, 22050)],
)
def test_block_resampling_equals_resampling_the_whole_file(tmp_path, monkeypatch, suffix, native_rate, sample_rate):
    """Each block is resampled as it is decoded, with exactly the samples of librosa's soxr_hq on the whole signal."""
    import librosa

    from crnn import audio

    y = np.random.default_rng(5).uniform(-0.5, 0.5, (int(native_rate * 1.3) + 77, 2)).astype(np.float32)
    path = tmp_path / f"noise{suffix}"
    if suffix == ".m4a":
        _write_m4a(path, y, native_rate)
    else:
        sf.write(path, y, native_rate, subtype="PCM_16")
    whole = load_audio(path, native_rate)  # the native mono mix (no resampling)
    expected = librosa.resample(whole, orig_sr=native_rate, target_sr=sample_rate, res_type="soxr_hq")
    monkeypatch.setattr(audio, "DECODE_BLOCK_FRAMES", 5000)  # many blocks, one short last block
    streamed = load_audio(path, sample_rate)
    assert streamed.dtype == np.float32
    np.testing.assert_array_equal(streamed, expected)
    in_memory = librosa.resample(y.mean(axis=1), orig_sr=native_rate, target_sr=sample_rate, res_type="soxr_hq")
    np.testing.assert_array_equal(audio.to_mono_resampled(y, native_rate, sample_rate), in_memory)


@pytest.mark.slow
def test_decoding_memory_is_bounded_by_the_output_not_the_file(tmp_path: Path) -> None:
    """8 channels at 192 kHz, 120 s: the peak RSS grows by the mono 22.05 kHz output (10 MiB) and a few MiB more.

    Holding the file's native-rate mono mix alone would take 88 MiB (the whole-file resample took 189 MiB).
    """
    from bench.decode_memory import measure, write_test_file

    path = write_test_file(tmp_path / "surround.flac", channels=8, sample_rate=192_000, seconds=120.0)
    figures = measure(path, 22050)
    assert figures["output_mib"] == pytest.approx(120 * 22050 * 4 / 2**20, rel=0.01)
    assert figures["increase_mib"] < figures["output_mib"] + 10, figures


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_downmix_is_the_channel_mean(channels: int) -> None:
    """Interleaved and planar blocks mix to the channel mean: bit for bit for 1-2 channels, within 1e-6 beyond."""
    from crnn.audio import downmix

    y = np.random.default_rng(channels).uniform(-1, 1, (4097, channels)).astype(np.float32)
    expected = y.mean(axis=1)
    for mono in (downmix(y), downmix(np.ascontiguousarray(y.T), planar=True)):
        assert mono.dtype == np.float32 and mono.shape == (4097,)
        if channels <= 2:
            np.testing.assert_array_equal(mono, expected)
        else:
            np.testing.assert_allclose(mono, expected, rtol=0, atol=1e-6)


def test_m4a_decode_gathers_frames_into_blocks_with_the_same_samples(tmp_path: Path, monkeypatch) -> None:
    """Stereo AAC: the block-gathered mix equals mixing every FFmpeg frame on its own, also when cut short."""
    import av

    from crnn import audio

    rate = 44100
    y = np.random.default_rng(9).uniform(-0.5, 0.5, (int(rate * 1.7), 2)).astype(np.float32)
    path = tmp_path / "stereo.m4a"
    _write_m4a(path, y, rate)
    with av.open(str(path)) as container:
        to_float = av.AudioResampler(format="fltp")
        frames = [out.to_ndarray() for f in container.decode(audio=0) for out in to_float.resample(f)]
    per_frame = np.concatenate([f.mean(axis=0) for f in frames])  # the mix before frames were gathered
    monkeypatch.setattr(audio, "DECODE_BLOCK_FRAMES", 5000)  # several blocks, one short last block
    np.testing.assert_array_equal(load_audio(path, rate), per_frame)
    np.testing.assert_array_equal(load_audio(path, rate, max_duration_s=0.5), per_frame[: rate // 2])
