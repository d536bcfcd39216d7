"""Label maps: TOML parsing, case/punctuation-insensitive many-to-one matching, one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from crnn.labelmap import LabelMap, LabelMapError, load_label_map, normalize


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_messy_values_map_many_to_one(tmp_path: Path) -> None:
    path = _write(
        tmp_path, 'hiphop = ["Hip-Hop", "Rap"]\nrock = ["Hard Rock", "Rock & Roll"]\nelectronic = "Électro"\n'
    )
    m = load_label_map(path)
    assert m.labels == ("hiphop", "rock", "electronic")
    for raw in ("hip hop", "HIP-HOP", " Hip Hop ", "rap", "hiphop"):
        assert m.label_for(raw) == "hiphop", raw
    for raw in ("Rock", "hard-rock", "ROCK & ROLL"):
        assert m.label_for(raw) == "rock", raw
    assert m.label_for("rock'n'roll") is None  # "rocknroll" is not "rockroll": no fuzzy matching
    assert m.label_for("electro") == "electronic"
    assert m.label_for("Jazz") is None and m.label_for(None) is None and m.label_for("  ") is None


def test_normalize() -> None:
    assert normalize("Hip-Hop") == normalize("hip hop") == "hiphop"
    assert normalize("Électro-Pop!") == "electropop"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('rock = ["Rock"\n', "not valid TOML"),
        ('rock = ["Rock"]\nrock = ["Hard Rock"]\n', "not valid TOML"),
        ('rock = ["Rock"]\npop = ["ROCK"]\n', "'ROCK' is mapped to both 'rock' and 'pop'"),
        ('Rock = ["Rock"]\n', "must be a lowercase word"),
        ("rock = [1, 2]\n", "expected a list of tag values"),
        ('rock = ["--"]\n', "has no letters or digits"),
        ("", "no labels"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(LabelMapError) as info:
        load_label_map(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabelMapError, match=r"nope\.toml: cannot read label map \(No such file"):
        load_label_map(tmp_path / "nope.toml")


def test_from_mapping_in_code() -> None:
    assert LabelMap.from_mapping({"jazz": ["Bebop"]}).label_for("be-bop") == "jazz"
