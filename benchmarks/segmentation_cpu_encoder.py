"""LiteMedSAM image encoder on the CPU: PyTorch eager vs ONNX Runtime vs OpenVINO (all fp32).

Timing is interleaved (each round encodes one real brain1 slice with every backend in turn), so
a load change on a shared machine hits all backends alike; report the medians and the ratios.
Agreement with the PyTorch reference on the brain1 lesion slices (and one either side): max
|Δ| of the image embedding, and Dice / IoU of the decoded masks for the label's box ±2 px and
two boxes jittered by ±3 px per side. ``--int8`` adds ONNX Runtime dynamic int8 (MatMul/Gemm,
per-channel), the cheapest quantisation, to show why it is not used.

    python benchmarks/segmentation_cpu_encoder.py [--threads 2] [--rounds 9] [--int8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DTTLib.imaging.io import read_image  # noqa: E402
from DTTLib.segmentation.backend import SliceEmbedding  # noqa: E402
from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: E402
from DTTLib.segmentation.prepare import litemedsam_input, window_slice  # noqa: E402


def boxes(label: np.ndarray, k: int) -> list[tuple[int, int, int, int]]:
    jj, ii = np.nonzero(label[k])
    base = np.array([ii.min() - 2, jj.min() - 2, ii.max() + 2, jj.max() + 2])
    rng = np.random.default_rng(k)
    return [tuple(int(v) for v in base + (rng.integers(-3, 4, 4) if j else 0)) for j in range(3)]


def masks(segmenter: LiteMedSAMSegmenter, features: np.ndarray, k_boxes: list) -> list[np.ndarray]:
    import torch  # noqa: PLC0415

    embedding = SliceEmbedding(features=(torch.from_numpy(features[None]).contiguous(), (256, 256)),
                               original_shape=(256, 256), backend=segmenter.name)
    return [segmenter.decode(embedding, box).mask for box in k_boxes]


def int8_dynamic(segmenter: LiteMedSAMSegmenter, threads: int):  # noqa: ANN201
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    from DTTLib.segmentation import onnx_encoder  # noqa: PLC0415

    target = Path(tempfile.mkdtemp()) / "int8.onnx"
    quantize_dynamic(str(onnx_encoder.encoder_path(segmenter.checkpoint)), str(target),
                     op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, weight_type=QuantType.QInt8)
    return onnx_encoder.OnnxEncoder(target, threads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imaging"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    image = read_image(Path(args.data) / "brain1_image.nrrd").array
    label = read_image(Path(args.data) / "brain1_label.nrrd").array > 0
    lesion = np.nonzero(label.any(axis=(1, 2)))[0]
    ks = list(range(int(lesion[0]) - 1, int(lesion[-1]) + 2))
    x = np.stack([litemedsam_input(window_slice(image[k]))[0] for k in ks])

    reference = LiteMedSAMSegmenter(device="cpu", encoder="torch", threads=args.threads)
    encoders = {"torch": lambda b: reference._encode_array(b).numpy()}
    for name in ("onnx", "openvino"):
        try:
            segmenter = LiteMedSAMSegmenter(device="cpu", encoder=name, threads=args.threads)
            encoders[segmenter.encoder_backend] = segmenter._onnx
        except Exception as error:  # noqa: BLE001 - report and go on with what is installed
            print(json.dumps({"backend": name, "unavailable": str(error)}))
    if args.int8:
        encoders["onnxruntime-int8-dynamic"] = int8_dynamic(reference, args.threads)

    ref = np.concatenate([encoders["torch"](x[i:i + 1]) for i in range(len(ks))])
    ref_masks = [masks(reference, ref[i], boxes(label, k if label[k].any() else int(lesion[0])))
                 for i, k in enumerate(ks)]
    agreement = {}
    for name, encode in encoders.items():
        emb = np.concatenate([encode(x[i:i + 1]) for i in range(len(ks))])
        dice, iou = [], []
        for i, k in enumerate(ks):
            for a, b in zip(masks(reference, emb[i], boxes(label, k if label[k].any() else int(lesion[0]))),
                            ref_masks[i]):
                dice.append(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
                iou.append((a & b).sum() / max((a | b).sum(), 1))
        agreement[name] = {"embedding_max_abs": float(np.abs(emb - ref).max()),
                           "embedding_rel_l2": float(np.linalg.norm(emb - ref) / np.linalg.norm(ref)),
                           "mask_dice_min": float(min(dice)), "mask_dice_median": float(np.median(dice)),
                           "mask_iou_min": float(min(iou)), "masks": len(dice)}
        print(json.dumps({"backend": name, **agreement[name]}))

    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for r in range(args.rounds + 1):  # round 0 is the warm-up
        xi = x[r % len(ks)][None]
        for name, encode in encoders.items():
            started = time.perf_counter()
            encode(xi)
            if r:
                times[name].append(1000 * (time.perf_counter() - started))
    load_after = os.getloadavg()[0]
    base = float(np.median(times["torch"]))
    timing = {name: {"median_ms": float(np.median(t)), "min_ms": float(min(t)),
                     "vs_torch": float(np.median(t)) / base} for name, t in times.items()}
    for name, row in timing.items():
        print(json.dumps({"backend": name, **row}))
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
               "load_average_1min": [load_before, load_after], "python": platform.python_version()}
    print(json.dumps({"machine": machine}))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "agreement": agreement,
                                               "timing": timing}, indent=2))


if __name__ == "__main__":
    main()
