"""Read UCF-101's official split files (``ucfTrainTestlist/``), as released or as the synthetic
world writes them.

``classInd.txt`` holds ``<1-based label> <Class>`` lines; ``trainlist0K.txt`` holds
``<Class>/v_<Class>_gNN_cMM.avi <label>``; ``testlist0K.txt`` holds ``<Class>/<file>`` without a
label. The released files end lines with CRLF.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CLIP_NAME = re.compile(r"^(?P<cls>[A-Za-z0-9]+)/v_(?P=cls)_g(?P<group>\d{2})_c(?P<clip>\d{2})\.avi$")


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing UCF-101 split file")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_classes(root: str | os.PathLike) -> list[str]:
    """Class names in label order (index = 0-based label) from ``ucfTrainTestlist/classInd.txt``."""
    path = Path(root) / "ucfTrainTestlist" / "classInd.txt"
    classes = []
    for number, line in enumerate(_lines(path), start=1):
        label, _, name = line.partition(" ")
        if not label.isdigit() or int(label) != number or not name:
            raise ValueError(f"{path}: line {number} is {line!r}, expected '{number} <ClassName>'")
        classes.append(name)
    return classes


def group_of(relative_path: str) -> int:
    """The group number (1-based) of ``Class/v_Class_gNN_cMM.avi``."""
    match = CLIP_NAME.match(relative_path)
    if match is None:
        raise ValueError(f"{relative_path!r} is not named like Class/v_Class_gNN_cMM.avi")
    return int(match["group"])


def read_split(root: str | os.PathLike, split: int = 1) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[str]]:
    """``(train, test, classes)`` of UCF-101 split 1, 2 or 3.

    ``train`` and ``test`` are lists of ``(path relative to root, 0-based label)``; a test
    clip's label comes from its class folder. Raises ``ValueError`` naming the file and line
    when a line is malformed or a label disagrees with its class.
    """
    if split not in (1, 2, 3):
        raise ValueError(f"UCF-101 has splits 1, 2 and 3, not {split!r}")
    root = Path(root)
    classes = read_classes(root)
    index = {name: i for i, name in enumerate(classes)}

    def parse(name: str, labelled: bool) -> list[tuple[str, int]]:
        path = root / "ucfTrainTestlist" / name
        items = []
        for number, line in enumerate(_lines(path), start=1):
            fields = line.split()
            relative = fields[0]
            match = CLIP_NAME.match(relative)
            if match is None or match["cls"] not in index or len(fields) != (2 if labelled else 1):
                raise ValueError(f"{path}: line {number} is {line!r}")
            label = index[match["cls"]]
            if labelled and int(fields[1]) != label + 1:
                raise ValueError(f"{path}: line {number} labels {relative} {fields[1]}, but classInd.txt says {label + 1}")
            items.append((relative, label))
        return items

    return parse(f"trainlist0{split}.txt", True), parse(f"testlist0{split}.txt", False), classes
