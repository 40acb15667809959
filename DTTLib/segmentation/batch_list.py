"""The list a batch segmentation works through: one CSV row per box, grouped into lesions.

Researchers annotating many cases keep their boxes in a spreadsheet; ``dtt segment --batch
LIST.csv`` reads it with this module. Columns (header row required, names case-insensitive):

* ``image`` — a scan file or DICOM folder, relative to the CSV's folder unless absolute;
* ``box`` — I0,J0,K0,I1,J1,K1 voxel indices (inclusive; K0 == K1 propagates), or ``box_ras``
  — X0,Y0,Z0,X1,Y1,Z1 in RAS mm; the six numbers separated by commas (quote the cell),
  semicolons or spaces. Both empty (or neither column) only for a model that needs no box
  (nnU-Net segments the whole scan);
* ``lesion`` (optional) — a name; rows with the same image and lesion are one lesion in
  several separate pieces (one box per piece, the mask is their union). Default: ``row<N>``
  (``proposals`` for a row without a box: the scan's nnU-Net proposals);
* ``organ`` (optional) — the lesion's organ, for the CT window rules;
* ``out`` (optional) — where its mask goes, relative to the output folder.

Every problem names its CSV line, so a list of a hundred rows is fixed in one pass: the whole
list is checked before any model is loaded.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from DTTLib.errors import InputError

COLUMNS = ("image", "box", "box_ras", "lesion", "organ", "out")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BatchLesion:
    """One lesion of the list: its scan, its boxes (one per piece) and where its mask goes."""

    image: Path
    lesion: str
    boxes: tuple[tuple[float, ...], ...]   # six numbers each, in ``space``
    space: str                             # "ijk" (voxel indices) or "ras" (mm); "" without boxes
    organ: str
    out: str                               # file name under the output folder ("" = default)
    lines: tuple[int, ...]                 # CSV line numbers, for messages

    @property
    def where(self) -> str:
        return f"line{'s' * (len(self.lines) > 1)} {', '.join(map(str, self.lines))}"

    def default_out(self, suffix: str = ".nii.gz") -> str:
        """``<image stem>_<lesion>.nii.gz``: unique per lesion, readable, safe on every OS."""
        stem = self.image.name
        for ending in (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha", ".mhd"):
            if stem.lower().endswith(ending):
                stem = stem[: -len(ending)]
                break
        return _SAFE_NAME.sub("_", f"{stem}_{self.lesion}") + suffix


def parse_six_numbers(text: str, where: str) -> tuple[float, ...]:
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 6:
        raise InputError(f"{where}: box '{text}' is not six numbers", "write six numbers, e.g. \"10,20,5,40,50,5\"")
    return values


def read_batch_list(path: str | Path, needs_box: bool = True) -> list[BatchLesion]:
    """The lesions of a batch CSV, in file order (rows of one lesion merged), fully checked."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"batch list '{path}' does not exist", "give a CSV file with an 'image' and a 'box' column")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"batch list '{path}' is not a readable CSV ({error})", "save it as UTF-8 CSV") from None
    rows = [(number, row) for number, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"batch list '{path}' is empty", "add a header row and one row per box")
    header = [cell.strip().lower() for cell in rows[0][1]]
    unknown = [name for name in header if name and name not in COLUMNS]
    if "image" not in header or unknown:
        problems = ([] if "image" in header else ["no 'image' column"]) + (
            [f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
        problem = " and ".join(problems)
        raise InputError(f"batch list '{path}': {problem} in the header",
                         f"use the columns {', '.join(COLUMNS)} (image and box or box_ras are needed)")
    lesions: dict[tuple[Path, str], dict] = {}
    for number, row in rows[1:]:
        cells = {name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(header) if name}
        where = f"{path.name} line {number}"
        if not cells["image"]:
            raise InputError(f"{where}: no image", "fill in the image column")
        image = Path(cells["image"]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        box, box_ras = cells.get("box", ""), cells.get("box_ras", "")
        if box and box_ras:
            raise InputError(f"{where}: both box and box_ras are filled in", "keep one of them")
        if needs_box and not (box or box_ras):
            raise InputError(f"{where}: no box", "fill in box (voxel indices) or box_ras (RAS mm)")
        space = "ijk" if box else "ras" if box_ras else ""
        numbers = parse_six_numbers(box or box_ras, where) if space else None
        if space == "ijk" and any(v != int(v) for v in numbers):  # type: ignore[union-attr]
            raise InputError(f"{where}: box '{box}' has non-integer voxel indices",
                             "voxel indices are whole numbers (use box_ras for millimetres)")
        name = cells.get("lesion", "") or (f"row{number}" if space else "proposals")  # no box: the scan's proposals
        entry = lesions.setdefault((image, name), {"boxes": [], "space": space, "organ": cells.get("organ", ""),
                                                    "out": cells.get("out", ""), "lines": []})
        if entry["lines"] and entry["space"] != space:
            raise InputError(f"{where}: lesion '{name}' mixes box kinds with line {entry['lines'][0]}",
                             "give all pieces of one lesion as box, or all as box_ras")
        if numbers is not None:
            entry["boxes"].append(numbers)
        entry["lines"].append(number)
        for key in ("organ", "out"):
            if cells.get(key) and entry[key] != cells[key]:
                if entry[key]:
                    raise InputError(f"{where}: lesion '{name}' has a different {key} than line {entry['lines'][0]}",
                                     f"give one {key} per lesion")
                entry[key] = cells[key]
    if not lesions:
        raise InputError(f"batch list '{path}' has a header but no rows", "add one row per box")
    result = [BatchLesion(image, name, tuple(e["boxes"]), e["space"], e["organ"], e["out"], tuple(e["lines"]))
              for (image, name), e in lesions.items()]
    outs: dict[str, BatchLesion] = {}
    for lesion in result:
        out = (lesion.out or lesion.default_out()).lower()
        if out in outs:
            raise InputError(f"{path.name} {lesion.where}: mask '{out}' is also written by {outs[out].where}",
                             "give the lesions different names or out files")
        outs[out] = lesion
    return result
