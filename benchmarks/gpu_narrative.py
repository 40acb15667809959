#!/usr/bin/env python3
"""Decode speed of a MedGemma-4B-sized model (random weights) and MedSigLIP-size embedding
throughput. Plain ``generate()`` vs static cache, and static cache + torch.compile (CUDA graphs).

GPU (H100/H200, ≤ 4 min):  python benchmarks/gpu_narrative.py --json out.json
CPU smoke test:            python benchmarks/gpu_narrative.py --tiny
"""

from __future__ import annotations

import argparse
import json
import time


def gemma_config(tiny: bool):
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    if tiny:
        text = Gemma3TextConfig(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=64)
        vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, image_size=64, patch_size=16)
        return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                            image_token_index=1000, boi_token_index=1001, eoi_token_index=1002), 4
    text = Gemma3TextConfig(vocab_size=262208, hidden_size=2560, intermediate_size=10240, num_hidden_layers=34,
                            num_attention_heads=8, num_key_value_heads=4, head_dim=256, sliding_window=1024,
                            rope_scaling={"rope_type": "linear", "factor": 8.0})
    vision = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                num_attention_heads=16, image_size=896, patch_size=14)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=256,
                        image_token_index=262144, boi_token_index=255999, eoi_token_index=256000), 256


def sync(device):
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def bench_decode(args, device, dtype):
    import torch
    from transformers import Gemma3ForConditionalGeneration

    config, image_tokens = gemma_config(args.tiny)
    t0 = time.perf_counter()
    with torch.device(device):
        model = Gemma3ForConditionalGeneration(config).to(dtype).eval()
    init_s = time.perf_counter() - t0
    prompt_len = args.prompt_tokens
    ids = torch.randint(0, 200, (1, prompt_len), device=device)
    start = 5
    ids[0, start - 1] = config.boi_token_index
    ids[0, start:start + image_tokens] = config.image_token_index
    ids[0, start + image_tokens] = config.eoi_token_index
    size = config.vision_config.image_size
    pixels = torch.rand(1, 3, size, size, device=device, dtype=dtype)
    tti = torch.zeros_like(ids)
    tti[0, start:start + image_tokens] = 1
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels, "token_type_ids": tti}
    results = {"init_s": round(init_s, 2)}
    modes = [("plain", {})]
    if device == "cuda" or args.tiny:
        modes.append(("static_cache", {"cache_implementation": "static"}))
        modes.append(("static_cache_compiled", {"cache_implementation": "static", "compile": True}))
    for name, extra in modes:
        kw = dict(extra)
        compile_it = kw.pop("compile", False)
        if compile_it:
            if args.tiny and device == "cpu":
                results[name] = {"skipped": "torch.compile not measured on CPU"}
                continue
            model.generation_config.compile_config = None
            kw["compile_config"] = None
        try:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                for _ in range(2 if compile_it else 1):  # warm-up (compile / graph capture)
                    model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False, **kw)
                sync(device)
                t = time.perf_counter()
                model.generate(**inputs, max_new_tokens=1, do_sample=False, **kw)
                sync(device)
                ttft = time.perf_counter() - t
                t = time.perf_counter()
                out = model.generate(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                     do_sample=False, **kw)
                sync(device)
                total = time.perf_counter() - t
            new = out.shape[1] - prompt_len
            decode = max(total - ttft, 1e-9)
            results[name] = {"new_tokens": int(new), "total_s": round(total, 3), "ttft_s": round(ttft, 3),
                             "decode_tok_s": round((new - 1) / decode, 1),
                             "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None}
        except Exception as exc:  # noqa: BLE001 - record and go on to the next mode
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        print(name, results[name], flush=True)
    del model
    return results


def bench_siglip(args, device, dtype):
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    if args.tiny:
        config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, image_size=32, patch_size=8)
        batches = [1, 4]
    else:
        config = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                    num_attention_heads=16, image_size=448, patch_size=14)
        batches = [1, 32]
    with torch.device(device):
        model = SiglipVisionModel(config).to(dtype).eval()
    out = {"embedding_dim": config.hidden_size}
    with torch.inference_mode():
        for batch in batches:
            x = torch.rand(batch, 3, config.image_size, config.image_size, device=device, dtype=dtype)
            model(pixel_values=x)
            sync(device)
            t = time.perf_counter()
            reps = 3
            for _ in range(reps):
                emb = model(pixel_values=x).pooler_output
            sync(device)
            dt = (time.perf_counter() - t) / reps
            out[f"batch_{batch}"] = {"ms": round(dt * 1000, 2), "images_per_s": round(batch / dt, 1)}
    assert emb.shape[-1] == config.hidden_size
    print("siglip", out, flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (smoke test)")
    parser.add_argument("--prompt-tokens", type=int, default=862)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args(argv)
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.tiny:
        args.prompt_tokens, args.new_tokens = min(args.prompt_tokens, 40), min(args.new_tokens, 10)
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "dtype": str(dtype),
              "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
              "decode": bench_decode(args, device, dtype), "siglip": bench_siglip(args, device, dtype)}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
