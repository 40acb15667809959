"""``dtt segment IMAGE --box I0,J0,K0,I1,J1,K1``: one box → the lesion in 3-D.

The box is in voxel indices of IMAGE as read from disk (i column, j row, k slice),
inclusive; ``--box-ras`` takes the same six numbers in RAS millimetres. ``K0 == K1``
propagates up and down from that slice; ``K0 < K1`` stays in that slab. The mask is written
in IMAGE's geometry (.nii.gz, .nii, .nrrd or .seg.nrrd by extension).

A lesion in separate pieces (a satellite focus not touching the main mass, even diagonally)
needs one box per piece: propagation keeps the 3-D component that contains its seed, so one
box never reaches another piece. Repeat ``--box`` (or ``--box-ras``); the mask is the union,
and the report lists each focus with its own measurements under ``foci``.

``--model nnunet:<folder or catalog id>`` needs no box: a trained nnU-Net model segments the
whole scan and each connected lesion becomes a measured proposal (P1, P2, … by volume); the
mask holds value n for proposal Pn (a .seg.nrrd gets one segment per proposal). Proposals are
only reported and written, never added to a case: the user decides.

``--batch LIST.csv --out-dir DIR`` segments every lesion of a CSV list (or, for nnU-Net, every
scan of a folder) with one loaded model: :mod:`DTTLib.cli.segment_batch`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from DTTLib.segmentation.nnunet_model import PREFIX as NNUNET_PREFIX  # light: no torch, no nnunetv2

MODELS = ("litemedsam", "medsam", "threshold")
MEDSAM_MODEL_ID = "medsam-vit-base"  # its catalog id (DTTLib/models/catalog.json)
#: Box models whose weights are downloaded, not shipped in a package: model key → catalog id.
DOWNLOADED_MODELS = {"medsam": MEDSAM_MODEL_ID}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment a lesion in 3-D from one box (LiteMedSAM, MedSAM or threshold), "
                        "or all lesions of a scan with nnU-Net (no box)")
    parser.add_argument("image", nargs="?", help="3-D image file (NRRD, NIfTI, MetaImage) or DICOM folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--box", action="append",
                       help="I0,J0,K0,I1,J1,K1 voxel indices, inclusive (K0==K1: propagate). Repeat it, one box "
                            "per focus, for a lesion in several separate pieces: the mask is their union")
    where.add_argument("--box-ras", action="append",
                       help="X0,Y0,Z0,X1,Y1,Z1 in RAS mm (two opposite corners); repeatable like --box")
    parser.add_argument("--model", default="litemedsam", metavar="MODEL",
                        help=f"{', '.join(MODELS)} (box needed; default: litemedsam) or "
                             "nnunet:<model folder or catalog id> (no box)")
    nnunet = parser.add_argument_group("nnU-Net (--model nnunet:...)")
    nnunet.add_argument("--tile-step", type=float, default=0.5,
                        help="sliding-window step as a fraction of the patch (0.5 = half overlap, default)")
    nnunet.add_argument("--no-mirroring", action="store_true", help="skip test-time mirroring (up to 8x faster)")
    nnunet.add_argument("--min-volume", type=float, default=10.0,
                        help="drop connected components smaller than this many mm³ (default 10)")
    nnunet.add_argument("--folds", help="comma-separated folds to ensemble (default: all present)")
    nnunet.add_argument("--probabilities", help="also write the lesion probability map (float) here")
    nnunet.add_argument("--trust-model", action="store_true",
                        help="allow a checkpoint that needs full unpickling (only for sources you trust)")
    parser.add_argument("--threshold", type=float,
                        help="--model threshold: intensity cut (default: Otsu inside the box)")
    parser.add_argument("--medsam-dir", help="--model medsam: local folder with the MedSAM weights (default: the "
                        "folder set with `dtt models use medsam-vit-base`, else its downloaded copy)")
    parser.add_argument("--window", default="auto",
                        help="slice preparation for box models: auto (the rules in window_presets.json for the "
                             "scan's DICOM modality and --organ), slice (percentiles) or a CT preset name "
                             "(soft_tissue, liver, lung, bone, brain)")
    parser.add_argument("--organ", default="", help="the lesion's organ, for --window auto")
    parser.add_argument("--refine-edges", choices=("auto", "on", "off"), default="auto",
                        help="move the model's outline to the lesion's intensity edge at full resolution: "
                             "auto (window_presets.json: on for CT, off for MR), on or off")
    parser.add_argument("--denoise-mm", default="auto",
                        help="in-plane Gaussian sigma (mm) of the slices the model sees (measurements use the raw "
                             "voxels): auto (window_presets.json: 0.7 for CT, 0 for MR) or a number, 0 = off")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", help="write the mask here (.nii.gz, .nii, .nrrd or .seg.nrrd)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    batch = parser.add_argument_group("many lesions, one loaded model (instead of IMAGE and --box)")
    batch.add_argument("--batch", metavar="LIST.csv",
                       help="CSV with columns image, box (or box_ras) and optional lesion, organ, out: one row per "
                            "box, rows with the same image and lesion are pieces of one lesion; paths relative to "
                            "the CSV. With --model nnunet:... the boxes are left out, or give a folder of scans")
    batch.add_argument("--out-dir", help="--batch: folder for the masks and measurements.csv (created if missing)")
    batch.add_argument("--resume", action="store_true",
                       help="--batch: keep lesions that measurements.csv in --out-dir lists as done")
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


def _boxes(args: argparse.Namespace, image: Any) -> list[Any]:
    """Every --box (or --box-ras) as a voxel box of IMAGE, each checked: one per focus."""
    return ([box_in_image(parse_six(text, "--box", True), "ijk", image, f"--box {text}") for text in args.box or []]
            + [box_in_image(parse_six(text, "--box-ras", False), "ras", image) for text in args.box_ras or []])


def box_in_image(values: Any, space: str, image: Any, label: str = "") -> Any:
    """Six numbers as a voxel box of IMAGE: ``space`` "ijk" (inclusive voxel indices, refused when
    they reach outside the image: a box is never silently cut) or "ras" (two opposite corners in mm)."""
    import numpy as np  # noqa: PLC0415

    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.segmentation.box import VoxelBox, checked_box, voxel_box_from_ras  # noqa: PLC0415

    if space == "ras":
        values = np.asarray(values, float)
        return voxel_box_from_ras(image, np.minimum(values[:3], values[3:]), np.maximum(values[:3], values[3:]))
    box = VoxelBox(*(int(v) for v in values))
    if checked_box(box, image) != box:
        ni, nj, nk = image.shape_ijk
        raise InputError(f"{label or 'box ' + ','.join(str(int(v)) for v in values)} reaches outside the image "
                         f"(voxel indices 0..{ni - 1}, 0..{nj - 1}, 0..{nk - 1})", "give a box inside the image")
    return box


def _check_output(path: str | None) -> None:
    from DTTLib.errors import InputError  # noqa: PLC0415

    if path is None:
        return
    check_mask_extension(path)
    if not Path(path).parent.exists():
        raise InputError(f"folder '{Path(path).parent}' does not exist", "create it first")


def check_mask_extension(path: str, where: str = "") -> None:
    """A mask file name the writers know (.nii.gz, .nii, .nrrd, .seg.nrrd, .mha), or a clear error."""
    from DTTLib.errors import InputError  # noqa: PLC0415

    if not Path(path).name.lower().endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
        raise InputError(f"{where}cannot write the mask to '{path}': unknown extension",
                         "use .nii.gz, .nii, .nrrd or .seg.nrrd")


def medsam_weights_folder() -> Path:
    """Where MedSAM ViT-B's weights are on this computer: the local folder set for it (``dtt models
    use``), else its downloaded copy in the user cache. Never downloads: that is ``dtt models
    download`` or, in Slicer, the user's answer to a question."""
    from DTTLib.errors import MissingDependencyError  # noqa: PLC0415
    from DTTLib.models.cache import ModelStore  # noqa: PLC0415

    folder = ModelStore().locate(MEDSAM_MODEL_ID)
    if folder is None:
        raise MissingDependencyError(
            "MedSAM ViT-B's weights are not on this computer",
            f"run `dtt models download {MEDSAM_MODEL_ID}` once (375 MB), or `dtt models use {MEDSAM_MODEL_ID} "
            "FOLDER` / --medsam-dir FOLDER for a copy you have, or use --model litemedsam")
    return folder


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
            medsam_dir = str(medsam_weights_folder())
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
    result["diameter_slice"] = int(found.slice_index)  # of the largest piece when there are several
    result["centroid_ras"] = [float(v) for v in found.centroid_ras]
    if len(found.pieces) > 1:  # RECIST fragments: the LD above is the sum of these
        result["pieces"] = [{"voxels": piece.voxels, "longest_diameter_mm": float(piece.longest_diameter_mm),
                             "short_axis_mm": float(piece.short_axis_mm), "diameter_slice": int(piece.slice_index),
                             "centroid_ras": [float(v) for v in piece.centroid_ras]} for piece in found.pieces]
    if found.notes:
        result["notes"] = list(found.notes)
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


def _check_model_name(model: str) -> bool:
    """True for an nnU-Net model; a clear error for an unknown one."""
    from DTTLib.errors import InputError  # noqa: PLC0415

    is_nnunet = model.lower().startswith(NNUNET_PREFIX)
    if not is_nnunet and model not in MODELS:
        raise InputError(f"unknown model '{model}'",
                         f"choose one of {', '.join(MODELS)} or nnunet:<model folder or catalog id>")
    return is_nnunet


def _check_model(args: argparse.Namespace) -> bool:
    """True for an nnU-Net model; a clear error for an unknown model or a missing/extra box."""
    from DTTLib.errors import InputError  # noqa: PLC0415

    is_nnunet = _check_model_name(args.model)
    has_box = args.box is not None or args.box_ras is not None
    if is_nnunet and has_box:
        raise InputError("nnU-Net segments the whole scan and takes no box",
                         "drop --box/--box-ras, or use --model litemedsam for one boxed lesion")
    if not is_nnunet and not has_box:
        raise InputError(f"--model {args.model} needs a box around the lesion",
                         "give --box I0,J0,K0,I1,J1,K1 or --box-ras, or use --model nnunet:<folder> (no box)")
    return is_nnunet


def write_proposals(proposal_set: Any, image: Any, path: str) -> Path:
    """Label map (value n = proposal Pn) in IMAGE's geometry; .seg.nrrd: one segment per proposal."""
    import numpy as np  # noqa: PLC0415

    from DTTLib.imaging.volume import ImageVolume  # noqa: PLC0415

    target = Path(path)
    if not target.name.lower().endswith(".seg.nrrd"):
        from DTTLib.imaging.io import write_image  # noqa: PLC0415

        labels = proposal_set.label_map()
        labels = labels.astype(np.uint8) if labels.max(initial=0) < 256 else labels
        return write_image(ImageVolume(labels, image.spacing, image.origin, image.direction, name="Proposals"),
                           target)
    from DTTLib.mrml.runtime import get_scene  # noqa: PLC0415
    from DTTLib.mrml.segmentations import add_segmentation_node, set_segment_mask  # noqa: PLC0415
    from DTTLib.mrml.storage import save_node  # noqa: PLC0415
    from DTTLib.mrml.volumes import add_volume_node  # noqa: PLC0415

    scene = get_scene()
    reference = add_volume_node(ImageVolume(np.asarray(image.array), image.spacing, image.origin,
                                            image.direction, name="reference"), "reference", scene=scene)
    node = add_segmentation_node(reference, "Proposals", scene=scene)
    for proposal in proposal_set.proposals:
        set_segment_mask(node, proposal_set.mask(proposal).astype(np.uint8), proposal.proposal_id, reference)
    return save_node(node, target)


def _window(window: str, organ: str, image: Any) -> str:
    """The slice preparation asked for (--window, the lesion's organ), checked before any model is loaded."""
    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.imaging.preprocess import load_window_presets, segmentation_window  # noqa: PLC0415

    if window == "auto":
        return segmentation_window(image.modality, organ)
    if window != "slice" and window not in load_window_presets():
        raise InputError(f"--window '{window}' is not auto, slice or a CT preset",
                         f"use one of auto, slice, {', '.join(sorted(load_window_presets()))}")
    return window


def _denoise_mm(args: argparse.Namespace, image: Any) -> float:
    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.imaging.preprocess import segmentation_denoise_mm  # noqa: PLC0415

    if args.denoise_mm == "auto":
        return segmentation_denoise_mm(image.modality)
    try:
        value = float(args.denoise_mm)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 5:
        raise InputError(f"--denoise-mm '{args.denoise_mm}' is not auto or a sigma in mm (0-5)",
                         "use auto, 0 (off) or e.g. 0.7")
    return value


def _refine_edges(args: argparse.Namespace, image: Any) -> bool:
    from DTTLib.imaging.preprocess import segmentation_edge_refinement  # noqa: PLC0415

    return segmentation_edge_refinement(image.modality) if args.refine_edges == "auto" else args.refine_edges == "on"


def nnunet_segmenter(args: argparse.Namespace) -> Any:
    """The nnU-Net model --model names, with --tile-step, --no-mirroring, --device, --folds, --trust-model."""
    from DTTLib.segmentation.nnunet import NnUNetSegmenter, NnUNetSettings  # noqa: PLC0415
    from DTTLib.segmentation.nnunet_model import resolve_model  # noqa: PLC0415

    folder = resolve_model(args.model)  # checks the folder before torch/nnunetv2 are imported
    folds = tuple(f.strip() for f in args.folds.split(",") if f.strip()) if args.folds else None
    return NnUNetSegmenter(folder, NnUNetSettings(tile_step_size=args.tile_step, use_mirroring=not args.no_mirroring,
                                                  device=args.device, folds=folds,
                                                  trust_checkpoint=args.trust_model))


def run_nnunet(args: argparse.Namespace, image: Any, started: float, timings: dict[str, Any]) -> int:
    """Whole-scan nnU-Net: proposals with measurements (printed or JSON), mask and probabilities."""
    from DTTLib.cli.output import print_fields, print_json  # noqa: PLC0415
    from DTTLib.segmentation.nnunet_proposals import find_lesions  # noqa: PLC0415

    t0 = time.perf_counter()
    segmenter = nnunet_segmenter(args)
    settings = segmenter.settings
    timings["load_model_s"] = time.perf_counter() - t0
    result = find_lesions(segmenter, image, min_volume_mm3=args.min_volume)
    timings.update(result.timings)
    summary: dict[str, Any] = {
        "model": f"{NNUNET_PREFIX}{segmenter.model.model_id}", "model_folder": str(segmenter.model.path),
        "configuration": segmenter.configuration, "device": segmenter.device, "note": segmenter.note,
        "tile_step_size": settings.tile_step_size, "mirroring": settings.use_mirroring,
        "proposal_count": len(result.proposals), "dropped_small": result.dropped_small,
        "proposals": [p.to_dict() for p in result.proposals],
    }
    if args.out:
        t0 = time.perf_counter()
        summary["out"] = str(write_proposals(result, image, args.out))
        timings["write_s"] = time.perf_counter() - t0
    if args.probabilities:
        from DTTLib.imaging.io import write_image  # noqa: PLC0415

        summary["probabilities"] = str(write_image(image.with_array(result.probabilities, name="probability"),
                                                   Path(args.probabilities)))
    timings["total_s"] = time.perf_counter() - started
    summary["timings"] = timings
    if args.json:
        print_json(summary)
        return 0
    rows = [(key, summary[key]) for key in ("model", "device", "proposal_count", "out") if key in summary]
    if summary["note"]:
        rows.append(("note", summary["note"]))
    for p in result.proposals:
        ld = f", LD {p.longest_diameter_mm:.1f} mm" if p.longest_diameter_mm is not None else ""
        rows.append((p.proposal_id, f"{p.label_name}: {p.volume_mm3:.0f} mm³{ld}, confidence {p.confidence:.2f}, "
                                    f"slices {p.slices[0]}-{p.slices[1]}"))
    print_fields(rows + [("time_s", round(timings["total_s"], 2))])
    return 0


def box_model_settings(args: argparse.Namespace, image: Any, organ: str = "") -> Any:
    """The propagation settings for one scan: --window/--refine-edges/--denoise-mm, with ``auto``
    resolved by the scan's modality (and the lesion's organ) from window_presets.json."""
    from DTTLib.segmentation.propagate import PropagationSettings  # noqa: PLC0415

    window = _window(args.window, organ, image)
    return PropagationSettings(window=window, refine_edges=_refine_edges(args, image),
                               denoise_mm=_denoise_mm(args, image))


def segment_boxes(image: Any, boxes: list[Any], segmenter: Any, settings: Any,
                  threshold: float | None = None) -> tuple[Any, list[Any], dict[str, Any]]:
    """One lesion from one box per piece: (union mask, each piece's mask, timings). No
    ``segmenter`` means the threshold model (``threshold``, else Otsu inside each box)."""
    import numpy as np  # noqa: PLC0415

    timings: dict[str, Any] = {}
    focus_masks = []
    t0 = time.perf_counter()
    if segmenter is None:
        from DTTLib.segmentation.threshold import segment_box_by_threshold  # noqa: PLC0415

        for box in boxes:
            cut = otsu_threshold(image.array[box.slices()]) if threshold is None else threshold
            focus_masks.append(segment_box_by_threshold(image, box, cut))
        timings["segment_s"] = time.perf_counter() - t0
    else:
        from DTTLib.segmentation.propagate import propagate_box  # noqa: PLC0415

        encode_s, decode_s = [], []
        for box in boxes:
            result = propagate_box(image, box, segmenter, settings)
            focus_masks.append(result.mask)
            encode_s += result.encode_s
            decode_s += result.decode_s
        timings["segment_s"] = time.perf_counter() - t0
        timings["slices_encoded"] = len(encode_s)
        if encode_s:
            timings["encoder_median_s"] = float(np.median(encode_s))
        if decode_s:
            timings["decoder_median_s"] = float(np.median(decode_s))
    mask = np.logical_or.reduce([np.asarray(m) > 0 for m in focus_masks]).astype(np.uint8)
    return mask, focus_masks, timings


def lesion_summary(image: Any, mask: Any, boxes: list[Any], focus_masks: list[Any]) -> dict[str, Any]:
    """Measurements, slices, voxels and boxes of one segmented lesion (the --json fields)."""
    import numpy as np  # noqa: PLC0415

    ks = np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]
    summary: dict[str, Any] = measurements(mask, image)
    if len(boxes) > 1:  # one box per focus: each focus's own mask measured too (its pieces, when the
        # foci do not touch, are the union's RECIST fragments: their LDs add up to the union's)
        summary["foci"] = [{"box_ijk": [b.i0, b.j0, b.k0, b.i1, b.j1, b.k1], "voxels": int(np.count_nonzero(m)),
                            **measurements(np.asarray(m, dtype=np.uint8), image)}
                           for b, m in zip(boxes, focus_masks)]
    box = boxes[0]
    summary.update({
        "slices": [int(ks[0]), int(ks[-1])] if ks.size else None,
        "voxels": int(np.count_nonzero(mask)),
        "box_ijk": [box.i0, box.j0, box.k0, box.i1, box.j1, box.k1],
        "boxes_ijk": [[b.i0, b.j0, b.k0, b.i1, b.j1, b.k1] for b in boxes],
    })
    return summary


def model_fields(model: str, segmenter: Any, settings: Any) -> dict[str, Any]:
    """Which model ran where, and with which slice preparation (None for the threshold model)."""
    box_model = segmenter is not None
    fields = {"model": model, "device": str(segmenter.device) if box_model else "cpu",
              "window": settings.window if box_model else None,
              "refine_edges": settings.refine_edges if box_model else None,
              "denoise_mm": settings.denoise_mm if box_model else None}
    if box_model and getattr(segmenter, "memory_notes", None):  # GPU memory changed the work: say how
        fields["memory_notes"] = list(segmenter.memory_notes)
    return fields


def run(args: argparse.Namespace) -> int:
    from DTTLib.cli.output import print_fields, print_json  # noqa: PLC0415
    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.imaging.io import read_image  # noqa: PLC0415

    if args.batch:
        from DTTLib.cli.segment_batch import run_batch  # noqa: PLC0415

        _check_model_name(args.model)
        return run_batch(args)
    if not args.image:
        raise InputError("no image to segment", "give IMAGE with --box, or --batch LIST.csv --out-dir DIR")
    if args.out_dir or args.resume:
        raise InputError("--out-dir and --resume belong to --batch", "use --out for one lesion's mask")
    is_nnunet = _check_model(args)
    if is_nnunet and "torch" not in sys.modules:
        # OpenMP threads sleep while waiting instead of spinning: on a busy 2-core machine spinning
        # made nnU-Net's 3-D convolutions many times slower (docs/PERFORMANCE.md); read at torch load
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _check_output(args.out)
    _check_output(getattr(args, "probabilities", None))
    if is_nnunet:
        from DTTLib.segmentation.nnunet_model import resolve_model  # noqa: PLC0415

        resolve_model(args.model)  # a bad model folder fails before the image is read
    started = time.perf_counter()
    image = read_image(args.image)
    if is_nnunet:
        return run_nnunet(args, image, started, {"read_s": time.perf_counter() - started})
    boxes = _boxes(args, image)
    settings = box_model_settings(args, image, args.organ)
    timings: dict[str, Any] = {"read_s": time.perf_counter() - started}
    segmenter = None
    if args.model != "threshold":
        t0 = time.perf_counter()
        segmenter = make_segmenter(args.model, args.device, args.medsam_dir)
        timings["load_model_s"] = time.perf_counter() - t0
    mask, focus_masks, segment_timings = segment_boxes(image, boxes, segmenter, settings, args.threshold)
    timings.update(segment_timings)
    summary = lesion_summary(image, mask, boxes, focus_masks)
    summary.update(model_fields(args.model, segmenter, settings))
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
