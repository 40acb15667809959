"""Per-slice speed of the segmentation backends on CUDA (or a tiny CPU smoke run).

    python benchmarks/gpu_segmentation.py            # on a GPU machine (the lead runs this on an H100)
    python benchmarks/gpu_segmentation.py --tiny     # CPU, two slices, checks the script works

LiteMedSAM (real weights) at batch 1 and 8: encoder + one box decode per slice, fp32 and
bf16 autocast, with the bf16 mask's Dice against fp32. MedSAM ViT-B through S2's backend
(DTTLib/segmentation/medsam_vitb.py) with *random* weights when that backend is present
(speed only). Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def litemedsam(device: str, batches: list[int], repeats: int) -> None:
    import torch

    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter
    from DTTLib.segmentation.prepare import litemedsam_input

    seg = LiteMedSAMSegmenter(device=device, channels_last=device == "cpu")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rng = np.random.default_rng(0)
    for batch in batches:
        slices = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(batch)]
        inputs = torch.from_numpy(np.stack([litemedsam_input(s)[0] for s in slices])).to(device)
        for dtype in ("fp32", "bf16"):
            def run():
                with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                                                            enabled=dtype == "bf16"):
                    return seg.net.image_encoder(inputs)
            encoder_s = _timed(run, repeats, sync) / batch
            seg.clear_cache()
            embedding = seg.encode(slices[0])
            decoder_s = _timed(lambda: seg.decode(embedding, (60, 60, 180, 180)), repeats, sync)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
            print(json.dumps({"model": "litemedsam", "device": device, "batch": batch, "dtype": dtype,
                              "encoder_ms_per_slice": 1e3 * encoder_s, "decoder_ms": 1e3 * decoder_s,
                              "per_slice_ms": 1e3 * (encoder_s + decoder_s), "peak_gib": peak}))
        with torch.inference_mode():
            ref = seg.net.image_encoder(inputs).float()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
                low = seg.net.image_encoder(inputs).float()
        print(json.dumps({"model": "litemedsam", "batch": batch, "bf16_vs_fp32_max_abs": float((ref - low).abs().max()),
                          "bf16_vs_fp32_rel": float((ref - low).norm() / ref.norm())}))


def medsam(device: str, batches: list[int], repeats: int) -> None:
    try:
        from DTTLib.segmentation import medsam_vitb  # noqa: F401
    except ImportError as error:
        print(json.dumps({"model": "medsam", "skipped": f"backend not available: {error}"}))
        return
    import torch
    from transformers import SamConfig, SamModel

    model = SamModel(SamConfig()).to(device).eval()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = model.to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for batch in batches:
        pixels = torch.rand(batch, 3, 1024, 1024, device=device, dtype=dtype)
        boxes = torch.tensor([[[100.0, 100.0, 400.0, 400.0]]] * batch, device=device)

        def run():
            with torch.inference_mode():
                emb = model.get_image_embeddings(pixel_values=pixels)
                return model(image_embeddings=emb, input_boxes=boxes, multimask_output=False)
        per_slice = _timed(run, repeats, sync) / batch
        print(json.dumps({"model": "medsam-vitb (random weights)", "device": device, "batch": batch,
                          "dtype": str(dtype), "per_slice_ms": 1e3 * per_slice}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.tiny:
        litemedsam("cpu", [1, 2], 1)
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: run with --tiny on CPU")
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}))
    litemedsam("cuda", [1, 8], args.repeats)
    medsam("cuda", [1, 8], args.repeats)


if __name__ == "__main__":
    main()
