"""MedSAM ViT-B speed through DTTLib's MedSAMViTB: encode + box decode per slice, re-decode.

Full-size ``SamConfig()`` (ViT-B, 1024 px) with random weights, saved with
``save_pretrained`` and loaded through the real loading code, bf16 on CUDA by default.
Reports medians of per-slice time at batch 1 and batch 8 (encoder on the batch, then one box
decode per slice, masks back on the host), the box re-decode on a cached embedding, and the
peak GPU memory of each. ``--tiny`` runs a tiny config on the CPU as a smoke test.

    python benchmarks/gpu_medsam_vitb.py                 # GPU, bf16
    python benchmarks/gpu_medsam_vitb.py --tiny          # CPU smoke test
    python benchmarks/gpu_medsam_vitb.py --json out.json

Reference (DESIGN.md, H200, bf16): 24 ms/slice at batch 1, 10.8 ms at batch 8, 5 ms
re-decode, peak 1.0 GB / 6.8 GB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))  # tiny_models: the --tiny config


def slices(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.repeat(rng.integers(0, 256, (size, size, 1), dtype=np.uint8), 3, axis=2)
            for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny config on the CPU (smoke test)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: bf16 on GPU)")
    parser.add_argument("--size", type=int, default=512, help="slice size in pixels (square)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch  # noqa: PLC0415
    from tiny_models import tiny_sam_config  # noqa: PLC0415
    from transformers import SamConfig, SamModel  # noqa: PLC0415

    from DTTLib.segmentation.medsam_vitb import MedSAMViTB  # noqa: PLC0415

    device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    repeats = 3 if args.tiny and args.repeats == 20 else args.repeats

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def peak_reset() -> None:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gb() -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    torch.manual_seed(0)
    config = tiny_sam_config() if args.tiny else SamConfig()
    with tempfile.TemporaryDirectory() as folder:
        SamModel(config).save_pretrained(folder)
        start = time.perf_counter()
        segmenter = MedSAMViTB(folder, device=device, dtype=args.dtype, batch_size=8)
        load_s = time.perf_counter() - start
    params = sum(p.numel() for p in segmenter.model.parameters())
    box = (0.3 * args.size, 0.35 * args.size, 0.6 * args.size, 0.7 * args.size)
    results: dict[str, object] = {"device": name, "dtype": str(segmenter.dtype).replace("torch.", ""),
                                  "params_m": round(params / 1e6, 2), "slice_px": args.size,
                                  "load_s": round(load_s, 2), "tiny": args.tiny}

    for batch in (1, 8):
        batch_slices = slices(batch, args.size, seed=batch)
        segmenter.batch_size = batch
        for _ in range(2):  # warm-up (cuDNN/cuBLAS autotune, allocator)
            segmenter.clear_cache()  # the segmenter keeps embeddings: time the encoder every round
            [segmenter.decode(e, box) for e in segmenter.encode_batch(batch_slices)]
        sync()
        peak_reset()
        times = []
        for _ in range(repeats):
            segmenter.clear_cache()
            sync()
            start = time.perf_counter()
            masks = [segmenter.decode(e, box).mask for e in segmenter.encode_batch(batch_slices)]
            sync()
            times.append((time.perf_counter() - start) / batch)
        assert masks[0].shape == (args.size, args.size)
        results[f"batch{batch}_ms_per_slice"] = round(1e3 * statistics.median(times), 2)
        results[f"batch{batch}_peak_gb"] = None if peak_gb() is None else round(peak_gb(), 2)

    embedding = segmenter.encode(slices(1, args.size, seed=99)[0])
    for _ in range(3):
        segmenter.decode(embedding, box)
    peak_reset()
    times = []
    for n in range(max(repeats, 10) * 3):
        shifted = (box[0] + n % 7, box[1], box[2] + n % 5, box[3])
        sync()
        start = time.perf_counter()
        segmenter.decode(embedding, shifted)
        sync()
        times.append(time.perf_counter() - start)
    results["redecode_ms"] = round(1e3 * statistics.median(times), 2)
    results["redecode_peak_gb"] = None if peak_gb() is None else round(peak_gb(), 2)

    print(f"MedSAM ViT-B via DTTLib.MedSAMViTB on {name}, {results['dtype']}, "
          f"{results['params_m']} M params{' (tiny)' if args.tiny else ''}, {args.size}² slices, "
          f"median of {repeats}")
    print(f"  encode + box decode, batch 1: {results['batch1_ms_per_slice']} ms/slice "
          f"(peak {results['batch1_peak_gb']} GB)")
    print(f"  encode + box decode, batch 8: {results['batch8_ms_per_slice']} ms/slice "
          f"(peak {results['batch8_peak_gb']} GB)")
    print(f"  box re-decode on a cached embedding: {results['redecode_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
