"""``dtt segment --batch LIST.csv --out-dir DIR``: many lesions on many scans, one loaded model.

A shell loop over ``dtt segment`` loads the model (and compiles its encoder) once per lesion;
here it is loaded once, each scan is read once for all of its lesions, and one lesion's bad
box or one unreadable scan costs only that lesion: its row says why and the batch goes on.

The list is :mod:`DTTLib.segmentation.batch_list`'s CSV (checked as a whole before the model
loads). With ``--model nnunet:…`` no box is needed, and ``--batch`` may also be a folder: every
scan in it (image files, and sub-folders read as DICOM series) gets its lesion proposals.

Output folder: one mask per lesion (``<scan>_<lesion>.nii.gz`` unless the list names one;
nnU-Net: ``<scan>_proposals.nii.gz``, value n = proposal Pn) and ``measurements.csv``, one row
per lesion (per proposal), rewritten after every lesion so an interrupted batch keeps what it
finished. ``--resume`` skips lesions whose row says ``ok`` and whose mask is still there.
Exit status 0 when every lesion was segmented, 2 when some failed (the table says which).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

from DTTLib.errors import DTTError, InputError
from DTTLib.segmentation.batch_list import BatchLesion, read_batch_list

TABLE = "measurements.csv"
COLUMNS = ("image", "entry", "lesion", "status", "error", "out", "longest_diameter_mm", "short_axis_mm", "volume_mm3",
           "diameter_slice", "first_slice", "last_slice", "voxels", "boxes", "pieces", "centroid_r", "centroid_a",
           "centroid_s", "confidence", "model", "device", "seconds", "csv_lines")
IMAGE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")


def folder_lesions(folder: Path) -> list[BatchLesion]:
    """Every scan in ``folder`` as one boxless entry (nnU-Net proposals): image files, and
    sub-folders as DICOM series; segmentation files (``.seg.nrrd``) are not scans."""
    scans = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (
        p.is_dir() or (p.name.lower().endswith(IMAGE_SUFFIXES) and not p.name.lower().endswith(".seg.nrrd"))))
    if not scans:
        raise InputError(f"folder '{folder}' holds no scans", "put .nrrd/.nii.gz/.mha files or DICOM folders in it")
    return [BatchLesion(scan, "proposals", (), "", "", "", ()) for scan in scans]


class BatchTable:
    """``measurements.csv`` in the output folder, rewritten atomically after every lesion."""

    def __init__(self, out_dir: Path, resume: bool) -> None:
        self.path = out_dir / TABLE
        self.rows: list[dict[str, Any]] = []
        self.done: dict[tuple[str, str], list[dict[str, Any]]] = {}
        if resume and self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    self.done.setdefault((row.get("image", ""), row.get("entry", "")), []).append(row)

    def finished(self, image: str, entry: str, out_dir: Path) -> list[dict[str, Any]] | None:
        """The earlier rows of a list entry (a lesion, or a scan's nnU-Net proposals) that ended
        ``ok`` and still has its mask, else None."""
        rows = self.done.get((image, entry), [])
        if rows and all(r["status"] in ("ok", "proposal") and r["out"] and (out_dir / r["out"]).is_file()
                        for r in rows):
            return rows
        return None

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows += rows
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(temporary, self.path)


#: decimals kept in the table: 0.01 mm is far below any voxel, 0.1 mm³ below any lesion's voxel
DECIMALS = {"longest_diameter_mm": 2, "short_axis_mm": 2, "volume_mm3": 1, "centroid_r": 2, "centroid_a": 2,
            "centroid_s": 2, "confidence": 3}


def _row(lesion: BatchLesion, image_name: str, /, **fields: Any) -> dict[str, Any]:
    """A table row; ``fields`` may rename the lesion (an nnU-Net proposal's id)."""
    rounded = {key: round(value, DECIMALS[key]) if key in DECIMALS and isinstance(value, float) else value
               for key, value in fields.items()}
    return {"image": image_name, "entry": lesion.lesion, "lesion": lesion.lesion,
            "csv_lines": " ".join(map(str, lesion.lines)),
            "boxes": len(lesion.boxes) or "", **rounded}


def _measured_row(lesion: BatchLesion, image_name: str, summary: dict[str, Any], out: str,
                  seconds: float) -> dict[str, Any]:
    centroid = summary.get("centroid_ras") or ["", "", ""]
    slices = summary.get("slices") or ["", ""]
    return _row(lesion, image_name, status="ok", error="", out=out, seconds=round(seconds, 2),
                pieces=len(summary.get("pieces", [])) or (1 if summary.get("voxels") else 0),
                **{key: summary.get(key, "") for key in ("longest_diameter_mm", "short_axis_mm", "volume_mm3",
                                                         "diameter_slice", "voxels", "model", "device")},
                first_slice=slices[0], last_slice=slices[1],
                centroid_r=centroid[0], centroid_a=centroid[1], centroid_s=centroid[2])


def _load_model(args: argparse.Namespace, nnunet: bool) -> Any:
    from DTTLib.cli.segment import make_segmenter, nnunet_segmenter  # noqa: PLC0415

    if nnunet:
        return nnunet_segmenter(args)
    return None if args.model == "threshold" else make_segmenter(args.model, args.device, args.medsam_dir)


def _segment_lesion(args: argparse.Namespace, lesion: BatchLesion, image: Any, segmenter: Any,
                    out_dir: Path, image_name: str) -> list[dict[str, Any]]:
    from DTTLib.cli.segment import (box_in_image, box_model_settings, lesion_summary,  # noqa: PLC0415
                                    model_fields, segment_boxes, write_mask, write_proposals)

    started = time.perf_counter()
    if args.model.lower().startswith("nnunet:"):
        from DTTLib.segmentation.nnunet_proposals import find_lesions  # noqa: PLC0415

        found = find_lesions(segmenter, image, min_volume_mm3=args.min_volume)
        out = lesion.out or lesion.default_out()
        write_proposals(found, image, str(out_dir / out))
        seconds = time.perf_counter() - started
        model = {"model": f"nnunet:{segmenter.model.model_id}", "device": segmenter.device}
        return [_row(lesion, image_name, status="proposal", error="", out=out, seconds=round(seconds, 2),
                     **{**p.to_dict(), "lesion": p.proposal_id, "diameter_slice": "", **model,
                        "first_slice": p.slices[0], "last_slice": p.slices[1],
                        "centroid_r": p.centroid_ras[0], "centroid_a": p.centroid_ras[1],
                        "centroid_s": p.centroid_ras[2]})
                for p in found.proposals] or [_row(lesion, image_name, status="no lesion found", error="",
                                                   out=out, seconds=round(seconds, 2), **model)]
    boxes = [box_in_image(values, lesion.space, image) for values in lesion.boxes]
    settings = box_model_settings(args, image, lesion.organ or args.organ)
    mask, focus_masks, _ = segment_boxes(image, boxes, segmenter, settings, args.threshold)
    summary = {**lesion_summary(image, mask, boxes, focus_masks), **model_fields(args.model, segmenter, settings)}
    out = lesion.out or lesion.default_out()
    target = out_dir / out
    target.parent.mkdir(parents=True, exist_ok=True)
    write_mask(mask, image, str(target), name=lesion.lesion)
    return [_measured_row(lesion, image_name, summary, out, time.perf_counter() - started)]


def run_batch(args: argparse.Namespace) -> int:
    """The batch: check the list, load the model once, segment lesion by lesion (see module doc)."""
    from DTTLib.cli.output import print_fields, print_json  # noqa: PLC0415
    from DTTLib.cli.segment import check_mask_extension  # noqa: PLC0415
    from DTTLib.imaging.io import read_image  # noqa: PLC0415

    nnunet = args.model.lower().startswith("nnunet:")
    if args.image or args.box or args.box_ras or args.out:
        raise InputError("--batch takes its scans and boxes from the list",
                         "drop IMAGE, --box/--box-ras and --out (use --out-dir for the masks)")
    if not args.out_dir:
        raise InputError("--batch needs --out-dir", "name a folder for the masks and measurements.csv")
    source = Path(args.batch)
    if source.is_dir():
        if not nnunet:
            raise InputError(f"--batch {source} is a folder, which gives no boxes for --model {args.model}",
                             "list the boxes in a CSV (columns image, box; docs in `dtt segment --help`) "
                             "or use --model nnunet:<model> for boxless proposals")
        lesions = folder_lesions(source)
    else:
        lesions = read_batch_list(source, needs_box=not nnunet)
        if nnunet and any(lesion.boxes for lesion in lesions):
            raise InputError("nnU-Net segments whole scans and takes no boxes",
                             "leave the box columns empty, or use --model litemedsam")
    for lesion in lesions:  # folders under --out-dir are created; only the kind of file is checked here
        if lesion.out:
            check_mask_extension(lesion.out, f"{lesion.where}: ")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = BatchTable(out_dir, args.resume)
    started = time.perf_counter()
    segmenter = _load_model(args, nnunet)
    load_s = time.perf_counter() - started
    images: dict[Path, Any] = {}  # the scan in hand (or why it cannot be read), for its next lesions
    failures = 0
    for index, lesion in enumerate(lesions, start=1):
        image_name = str(lesion.image)
        earlier = table.finished(image_name, lesion.lesion, out_dir)
        if earlier is not None:
            table.add(earlier)
            print(f"[{index}/{len(lesions)}] {lesion.image.name} {lesion.lesion}: done earlier, kept", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            if lesion.image not in images:
                images.clear()  # lesions of one scan come together; keep one scan in memory
                try:
                    images[lesion.image] = read_image(lesion.image)
                except DTTError as unreadable:
                    images[lesion.image] = unreadable
            if isinstance(images[lesion.image], DTTError):
                raise images[lesion.image]
            rows = _segment_lesion(args, lesion, images[lesion.image], segmenter, out_dir, image_name)
        except DTTError as error:
            failures += 1
            rows = [_row(lesion, image_name, status="failed", error=error.message, out="",
                         seconds=round(time.perf_counter() - t0, 2))]
        except KeyboardInterrupt:
            table.add([_row(other, str(other.image), status="not run (interrupted)", error="", out="")
                       for other in lesions[index - 1:]])
            raise
        table.add(rows)
        state = rows[0]["status"] if rows[0]["status"] != "failed" else f"failed: {rows[0]['error']}"
        print(f"[{index}/{len(lesions)}] {lesion.image.name} {lesion.lesion}: {state} "
              f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    summary = {"lesions": len(lesions), "failed": failures, "table": str(table.path), "out_dir": str(out_dir),
               "model": args.model, "load_model_s": round(load_s, 2),
               "total_s": round(time.perf_counter() - started, 2), "rows": table.rows}
    if args.json:
        print_json(summary)
    else:
        print_fields([(key, value) for key, value in summary.items() if key != "rows"])
    if failures:
        raise _BatchFailed(failures, len(lesions), table.path)
    return 0


class _BatchFailed(DTTError):
    def __init__(self, failures: int, total: int, table: Path) -> None:
        super().__init__(f"{failures} of {total} lesions failed (their rows in {table} say why)",
                         "fix those rows or scans and run again with --resume to keep the finished ones")
