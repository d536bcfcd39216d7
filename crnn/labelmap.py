"""Label maps: a TOML file that maps a library's raw genre tag values to the labels of a model.

Each key is a label; its value is the raw tag values (a list of strings, or one string) that mean
it. Matching ignores case, accents, spaces and punctuation (``"Hip-Hop"``, ``"hip hop"`` and
``"HIPHOP"`` are the same value), several values may map to one label, and a label's own name
always maps to it::

    hiphop = ["Hip-Hop", "Rap", "Hip Hop/Rap"]
    rock = ["Rock", "Hard Rock", "Rock & Roll"]
    electronic = ["Electronica", "Techno", "House"]

Pure Python (``tomllib``): the tagged-library dataset source and ``evaluate --library`` share it.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LABEL_PATTERN = r"[a-z][a-z0-9_-]*"
"""A label: a lowercase letter, then lowercase letters, digits, ``_`` or ``-`` (as model labels are)."""


class LabelMapError(ValueError):
    """A label map file cannot be read or is inconsistent; the message is one line naming the file."""


def normalize(raw: str) -> str:
    """The matching key of a raw tag value: case-folded, accents dropped, only letters and digits kept.

    ``"Hip-Hop"``, ``"hip hop"`` and ``" HIPHOP "`` all give ``"hiphop"``; ``"Électro"`` gives ``"electro"``.
    """
    decomposed = unicodedata.normalize("NFKD", raw.casefold())
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))


@dataclass(frozen=True)
class LabelMap:
    """Raw tag values -> labels, many-to-one, matched by :func:`normalize`.

    Attributes:
        labels: the labels, in the file's order.
        keys: normalized raw value -> label.
        source: where the map was read from (for messages); ``""`` when built in code.
    """

    labels: tuple[str, ...]
    keys: Mapping[str, str] = field(repr=False)
    source: str = ""

    def label_for(self, raw: str | None) -> str | None:
        """The label of the raw tag value ``raw``, or ``None`` when it is missing, blank or not in the map."""
        if raw is None:
            return None
        return self.keys.get(normalize(raw))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], source: str = "") -> LabelMap:
        """Build a map from ``{label: [raw, ...] | raw}``; each label also maps its own name.

        Raises:
            LabelMapError: a label that is not a lowercase word, a value that is not a string or a list of
                strings, a raw value with nothing to match (only punctuation), one raw value under two
                labels, or no label at all. The message starts with ``source``.
        """
        where = f"{source}: " if source else ""
        keys: dict[str, str] = {}
        for label, values in mapping.items():
            if not re.fullmatch(LABEL_PATTERN, label):
                raise LabelMapError(f"{where}label {label!r} must be a lowercase word (letters, digits, _ or -)")
            values = [values] if isinstance(values, str) else values
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise LabelMapError(f"{where}label {label!r}: expected a list of tag values (strings)")
            for raw in [label, *values]:
                key = normalize(raw)
                if not key:
                    raise LabelMapError(f"{where}label {label!r}: tag value {raw!r} has no letters or digits")
                if keys.get(key, label) != label:
                    raise LabelMapError(f"{where}tag value {raw!r} is mapped to both {keys[key]!r} and {label!r}")
                keys[key] = label
        if not keys:
            raise LabelMapError(f'{where}no labels (expected lines like: rock = ["Rock", "Hard Rock"])')
        return cls(labels=tuple(mapping), keys=keys, source=source)


def load_label_map(path: str | Path) -> LabelMap:
    """Read the TOML label map at ``path`` (see the module docstring for its layout).

    Raises:
        LabelMapError: the file is missing or unreadable, not valid TOML (a duplicate label included),
            or inconsistent (see :meth:`LabelMap.from_mapping`); the one-line message names ``path``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LabelMapError(f"{path}: cannot read label map ({reason})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabelMapError(f"{path}: not valid TOML ({exc})") from exc
    return LabelMap.from_mapping(data, source=str(path))
