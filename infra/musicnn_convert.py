"""Convert a musicnn TensorFlow checkpoint to a torch-free ``.npz`` (run by ``infra.pretrained``).

This script runs in the isolated TensorFlow environment that ``infra.pretrained`` builds, not
in the project's: it imports only numpy and tensorflow. It reads the checkpoint's model
variables (not Adam's slots) by name and writes them, plus ``__checkpoint__``, to ``--out``.
It writes its outputs in place: ``infra.pretrained`` passes a staging name and renames it
(``infra.storage.commit``) only after checking every variable, so a killed conversion never
leaves a partial file under the final name.

With ``--reference AUDIO --reference-out FILE.npz`` it also runs musicnn's own ``extractor``
on AUDIO and saves its input patches, taggram and penultimate features, for the parity test.

Usage: python musicnn_convert.py --checkpoint-dir DIR --name MSD_musicnn --out FILE.npz
"""

import argparse
import os
import sys

import numpy as np


def _save(path: str, arrays: dict) -> None:
    """``np.savez`` to exactly ``path`` (no ``.npz`` appended); the caller stages and renames it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def convert(checkpoint_dir: str, name: str, out: str) -> int:
    """Write the model variables of the checkpoint in ``checkpoint_dir`` to ``out``; return their number."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(os.path.join(checkpoint_dir, ""))  # prefix: "<dir>/"
    names = [n for n in reader.get_variable_to_shape_map() if "Adam" not in n and not n.endswith("_power")]
    arrays = {n: reader.get_tensor(n).astype(np.float32) for n in sorted(names)}
    arrays["__checkpoint__"] = np.array(name)
    _save(out, arrays)
    return len(names)


def reference(audio: str, name: str, out: str, input_length: float) -> None:
    """Run musicnn's ``extractor`` on ``audio`` and save its patches, taggram and penultimate layer."""
    import librosa
    from musicnn import configuration, extractor

    taggram, _, features = extractor.extractor(audio, model=name, input_length=input_length, extract_features=True)
    n_frames = librosa.time_to_frames(input_length, sr=configuration.SR, n_fft=configuration.FFT_SIZE,
                                      hop_length=configuration.FFT_HOP) + 1  # fmt: skip
    batch, _ = extractor.batch_data(audio, n_frames, n_frames)
    _save(out, {"patches": batch.astype(np.float32), "taggram": taggram, "penultimate": features["penultimate"]})


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reference")
    parser.add_argument("--reference-out")
    parser.add_argument("--input-length", type=float, default=3.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    count = convert(args.checkpoint_dir, args.name, args.out)
    print(f"converted {count} variables of {args.name} -> {args.out}")
    if args.reference:
        reference(args.reference, args.name, args.reference_out, args.input_length)
        print(f"musicnn extractor reference of {args.reference} -> {args.reference_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
