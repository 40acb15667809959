"""``dtt info FILE``: an image's geometry as DTTLib reads it (RAS, Slicer conventions)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from DTTLib.cli.output import print_fields, print_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="print the geometry of an image file or DICOM folder")
    parser.add_argument("path", help="NRRD / NIfTI / MetaImage file, or a DICOM series folder")
    parser.add_argument("--series", help="DICOM SeriesInstanceUID when the folder holds several")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def orientation_code(direction: np.ndarray) -> str:
    """Letters of the anatomical direction each voxel axis points to (e.g. 'RAS', 'LPS')."""
    letters = (("L", "R"), ("P", "A"), ("I", "S"))
    code = ""
    for column in np.asarray(direction).T:
        axis = int(np.argmax(np.abs(column)))
        code += letters[axis][1] if column[axis] > 0 else letters[axis][0]
    return code


def geometry_summary(volume: Any) -> dict[str, Any]:
    array = volume.array
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    i, j, k = volume.shape_ijk
    return {
        "name": volume.name,
        "size_ijk": [i, j, k],
        "spacing_mm": list(volume.spacing),
        "origin_ras_mm": list(volume.origin),
        "direction_ras": np.asarray(volume.direction).tolist(),
        "orientation": orientation_code(volume.direction),
        "extent_mm": [float(n * s) for n, s in zip((i, j, k), volume.spacing)],
        "voxel_type": str(array.dtype),
        "value_range": [float(finite.min()), float(finite.max())] if finite.size else None,
        "non_finite_voxels": int(array.size - finite.size),
    }


def run(args: argparse.Namespace) -> int:
    from DTTLib.imaging.io import read_image  # noqa: PLC0415

    volume = read_image(args.path, series_uid=args.series)
    summary = geometry_summary(volume)
    dicom = volume.metadata.get("dicom")
    if dicom:
        summary["dicom"] = {key: dicom.get(key) for key in
                            ("Modality", "StudyDate", "SeriesDescription", "SeriesInstanceUID")}
    if args.json:
        print_json(summary)
        return 0
    print_fields([
        ("file", args.path),
        ("size (i, j, k)", " × ".join(str(n) for n in summary["size_ijk"])),
        ("spacing (mm)", ", ".join(f"{s:g}" for s in summary["spacing_mm"])),
        ("origin (RAS mm)", ", ".join(f"{o:.3f}" for o in summary["origin_ras_mm"])),
        ("orientation", summary["orientation"]),
        ("extent (mm)", ", ".join(f"{e:.1f}" for e in summary["extent_mm"])),
        ("voxel type", summary["voxel_type"]),
        ("value range", summary["value_range"]),
    ])
    if summary["non_finite_voxels"]:
        print(f"warning: {summary['non_finite_voxels']} voxels are NaN or infinite")
    return 0
