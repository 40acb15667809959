"""``dtt segment IMAGE --box I0,J0,K0,I1,J1,K1``: one box → the lesion in 3-D.

The box is in voxel indices of IMAGE as read from disk (i column, j row, k slice),
inclusive; ``--box-ras`` takes the same six numbers in RAS millimetres. ``K0 == K1``
propagates up and down from that slice; ``K0 < K1`` stays in that slab. The mask is written
in IMAGE's geometry (.nii.gz, .nii, .nrrd or .seg.nrrd by extension).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

MODELS = ("litemedsam", "medsam", "threshold")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment a lesion in 3-D from one box (LiteMedSAM, MedSAM or threshold)")
    parser.add_argument("image", help="3-D image file (NRRD, NIfTI, MetaImage) or DICOM folder")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--box", help="I0,J0,K0,I1,J1,K1 voxel indices, inclusive (K0==K1: propagate)")
    where.add_argument("--box-ras", help="X0,Y0,Z0,X1,Y1,Z1 in RAS mm (two opposite corners)")
    parser.add_argument("--model", choices=MODELS, default="litemedsam",
                        help="segmentation model (default: litemedsam)")
    parser.add_argument("--threshold", type=float,
                        help="--model threshold: intensity cut (default: Otsu inside the box)")
    parser.add_argument("--medsam-dir", help="--model medsam: local folder with the MedSAM weights")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", help="write the mask here (.nii.gz, .nii, .nrrd or .seg.nrrd)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def parse_six(text: str, what: str, integer: bool) -> list[float]:
    from DTTLib.errors import InputError  # noqa: PLC0415

    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 6:
        raise InputError(f"{what} '{text}' is not six numbers",
                         f"give {what} as I0,J0,K0,I1,J1,K1" if integer else f"give {what} as X0,Y0,Z0,X1,Y1,Z1")
    if integer and any(v != int(v) for v in values):
        raise InputError(f"{what} '{text}' has non-integer voxel indices", "voxel indices are whole numbers")
    return values


def _box(args: argparse.Namespace, image: Any) -> Any:
    import numpy as np  # noqa: PLC0415

    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.segmentation.box import VoxelBox, checked_box, voxel_box_from_ras  # noqa: PLC0415

    if args.box is not None:
        box = VoxelBox(*(int(v) for v in parse_six(args.box, "--box", True)))
        clipped = checked_box(box, image)
        if clipped != box:
            ni, nj, nk = image.shape_ijk
            raise InputError(f"--box {args.box} reaches outside the image (voxel indices 0..{ni - 1}, "
                             f"0..{nj - 1}, 0..{nk - 1})", "give a box inside the image")
        return box
    values = np.array(parse_six(args.box_ras, "--box-ras", False))
    low, high = np.minimum(values[:3], values[3:]), np.maximum(values[:3], values[3:])
    return voxel_box_from_ras(image, low, high)


def _check_output(path: str | None) -> None:
    from DTTLib.errors import InputError  # noqa: PLC0415

    if path is None:
        return
    name = Path(path).name.lower()
    if not name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
        raise InputError(f"cannot write the mask to '{path}': unknown extension",
                         "use .nii.gz, .nii, .nrrd or .seg.nrrd")
    if not Path(path).parent.exists():
        raise InputError(f"folder '{Path(path).parent}' does not exist", "create it first")


def make_segmenter(model: str, device: str | None = None, medsam_dir: str | None = None) -> Any:
    """The backend for ``model`` (litemedsam | medsam); a clear error when it cannot load."""
    from DTTLib.errors import InputError, MissingDependencyError  # noqa: PLC0415

    if model == "litemedsam":
        from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: PLC0415

        return LiteMedSAMSegmenter(device=device)
    if model == "medsam":
        try:
            from DTTLib.segmentation import medsam_vitb  # noqa: PLC0415
        except ImportError as error:
            if "medsam_vitb" in str(error):
                raise MissingDependencyError("the MedSAM ViT-B backend is not part of this installation",
                                             "use --model litemedsam") from None
            raise MissingDependencyError(f"MedSAM ViT-B needs a package that is missing ({error})",
                                         "pip install 'DigitalTwinTumor[segmentation]' transformers") from None
        if not medsam_dir:
            raise MissingDependencyError("MedSAM ViT-B needs its weights in a local folder",
                                         "pass --medsam-dir FOLDER (flaviagiammarino/medsam-vit-base, "
                                         "downloaded once) or use --model litemedsam")
        from DTTLib.segmentation.litemedsam import choose_device  # noqa: PLC0415

        return medsam_vitb.MedSAMViTB(medsam_dir, device=choose_device(device))
    raise InputError(f"unknown model '{model}'", f"choose one of {', '.join(MODELS)}")


def otsu_threshold(values: Any) -> float:
    import numpy as np  # noqa: PLC0415

    values = np.asarray(values, dtype=float).ravel()
    hist, edges = np.histogram(values, bins=256)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))]) if len(between) > 1 else float(values.mean())


def measurements(mask: Any, image: Any) -> dict[str, Any]:
    """Volume always; diameters from DTTLib.measurement.diameters when that module exists."""
    from DTTLib.measurement import mask_volume_mm3  # noqa: PLC0415

    result: dict[str, Any] = {"volume_mm3": mask_volume_mm3(mask, image)}
    import numpy as np  # noqa: PLC0415

    if not np.any(mask):
        return result
    try:
        from DTTLib.measurement.diameters import measure_lesion  # noqa: PLC0415
    except ImportError:
        return result
    found = measure_lesion(mask, image)
    result["longest_diameter_mm"] = float(found.longest_diameter_mm)
    result["short_axis_mm"] = float(found.short_axis_mm)
    result["diameter_slice"] = int(found.slice_index)
    result["centroid_ras"] = [float(v) for v in found.centroid_ras]
    return result


def write_mask(mask: Any, image: Any, path: str, name: str = "Lesion") -> Path:
    import numpy as np  # noqa: PLC0415

    from DTTLib.imaging.volume import ImageVolume  # noqa: PLC0415

    target = Path(path)
    labels = ImageVolume(np.asarray(mask, dtype=np.uint8), image.spacing, image.origin, image.direction,
                         name=name)
    if target.name.lower().endswith(".seg.nrrd"):
        from DTTLib.mrml.runtime import get_scene  # noqa: PLC0415
        from DTTLib.mrml.segmentations import add_segmentation_node, set_segment_mask  # noqa: PLC0415
        from DTTLib.mrml.storage import save_node  # noqa: PLC0415
        from DTTLib.mrml.volumes import add_volume_node  # noqa: PLC0415

        scene = get_scene()
        reference = add_volume_node(ImageVolume(np.asarray(image.array), image.spacing, image.origin,
                                                image.direction, name="reference"), "reference", scene=scene)
        node = add_segmentation_node(reference, "Lesions", scene=scene)
        set_segment_mask(node, mask, name, reference, allow_empty=True)
        return save_node(node, target)
    from DTTLib.imaging.io import write_image  # noqa: PLC0415

    return write_image(labels, target)


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from DTTLib.cli.output import print_fields, print_json  # noqa: PLC0415
    from DTTLib.imaging.io import read_image  # noqa: PLC0415

    _check_output(args.out)
    started = time.perf_counter()
    image = read_image(args.image)
    box = _box(args, image)
    timings: dict[str, Any] = {"read_s": time.perf_counter() - started}
    device = "cpu"
    if args.model == "threshold":
        from DTTLib.segmentation.threshold import segment_box_by_threshold  # noqa: PLC0415

        threshold = args.threshold
        if threshold is None:
            threshold = otsu_threshold(image.array[box.slices()])
        t0 = time.perf_counter()
        mask = segment_box_by_threshold(image, box, threshold)
        timings["segment_s"] = time.perf_counter() - t0
    else:
        from DTTLib.segmentation.propagate import propagate_box  # noqa: PLC0415

        t0 = time.perf_counter()
        segmenter = make_segmenter(args.model, args.device, args.medsam_dir)
        device = str(segmenter.device)
        timings["load_model_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = propagate_box(image, box, segmenter)
        mask = result.mask
        timings["segment_s"] = time.perf_counter() - t0
        timings["slices_encoded"] = len(result.encode_s)
        if result.encode_s:
            timings["encoder_median_s"] = float(np.median(result.encode_s))
        if result.decode_s:
            timings["decoder_median_s"] = float(np.median(result.decode_s))
    ks = np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]
    summary: dict[str, Any] = measurements(mask, image)
    summary.update({
        "slices": [int(ks[0]), int(ks[-1])] if ks.size else None,
        "voxels": int(np.count_nonzero(mask)),
        "box_ijk": [box.i0, box.j0, box.k0, box.i1, box.j1, box.k1],
        "model": args.model,
        "device": device,
    })
    if args.out:
        t0 = time.perf_counter()
        summary["out"] = str(write_mask(mask, image, args.out))
        timings["write_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    summary["timings"] = timings
    if args.json:
        print_json(summary)
    else:
        print_fields([(key, value) for key, value in summary.items() if key != "timings"]
                     + [("time_s", round(timings["total_s"], 2))])
    return 0
