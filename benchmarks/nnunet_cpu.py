#!/usr/bin/env python3
"""nnU-Net inference cost on a CT-sized volume: seconds per volume and peak memory, CPU or GPU.

Two networks, both with random weights (compute does not depend on the weights):

* ``tiny`` — the architecture of the committed test model (Testing/data/tiny_nnunet: 3 stages,
  8/16/32 features, patch 32³), with its target spacing set to 1 mm;
* ``fullres`` — what nnU-Net's own ExperimentPlanner plans as 3d_fullres for a CT dataset of
  512×512×200 voxels at 1 mm (fingerprint written here; no data needed): the size of a real
  Decathlon-class model.

The volume is 512×512×200 at 1 mm (about a thorax/abdomen CT). Inference is
``nnUNetPredictor.predict_single_npy_array`` — preprocessing, Gaussian sliding window with
``--tile-step`` overlap, mirroring (``--no-mirroring`` to drop it), resampling back,
probabilities returned — exactly what DTTLib.segmentation.nnunet runs.

The script times one tile's network work (forward plus the mirrored forwards, after a
warm-up) and counts the tiles the full volume needs (nnU-Net's own step rule). When network
time × tiles exceeds ``--budget-s`` (the CPU), the full volume still runs through the whole
pipeline — preprocessing, the sliding-window loop with Gaussian weighting, resampling back,
probabilities — with the network replaced by one that returns zeros, and the figure is that
time plus the extrapolated network time (``"measured"`` says so). Otherwise (and always on
the GPU) the full volume is run with the real network and timed.

    .venv/bin/python benchmarks/nnunet_cpu.py [--device cpu|cuda] [--arch tiny,fullres] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TINY = ROOT / "Testing" / "data" / "tiny_nnunet"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def fullres_plans(shape_zyx: tuple[int, int, int], spacing: float) -> tuple[dict, dict]:
    """nnU-Net's ExperimentPlanner on a written fingerprint of one CT of ``shape_zyx`` at ``spacing`` mm."""
    import SimpleITK as sitk  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="nnunet_plan_"))
    try:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            os.environ[name] = str(work / name)
        name = "Dataset902_CTSize"
        raw, pre = work / "nnUNet_raw" / name, work / "nnUNet_preprocessed" / name
        (raw / "imagesTr").mkdir(parents=True)
        (raw / "labelsTr").mkdir()
        pre.mkdir(parents=True)
        dummy = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16))  # only its file type is read
        sitk.WriteImage(dummy, str(raw / "imagesTr" / "ct_0000.nii.gz"))
        sitk.WriteImage(sitk.Cast(dummy, sitk.sitkUInt8), str(raw / "labelsTr" / "ct.nii.gz"))
        dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1}, "numTraining": 1,
                   "file_ending": ".nii.gz"}
        (raw / "dataset.json").write_text(json.dumps(dataset))
        (pre / "dataset_fingerprint.json").write_text(json.dumps({
            "spacings": [[spacing] * 3] * 10, "shapes_after_crop": [list(shape_zyx)] * 10,
            "median_relative_size_after_cropping": 1.0,
            "foreground_intensity_properties_per_channel": {"0": {
                "mean": 80.0, "median": 70.0, "std": 60.0, "min": -1000.0, "max": 2000.0,
                "percentile_99_5": 300.0, "percentile_00_5": -100.0}}}))
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (  # noqa: PLC0415
            ExperimentPlanner,
        )

        with contextlib.redirect_stdout(io.StringIO()):
            plans = ExperimentPlanner(name).plan_experiment()
        plans = json.loads(json.dumps(plans, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        plans["configurations"] = {"3d_fullres": plans["configurations"]["3d_fullres"]}
        return plans, dataset
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            os.environ.pop(name, None)


def tiny_plans(spacing: float) -> tuple[dict, dict]:
    plans = json.loads((TINY / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["spacing"] = [spacing] * 3
    return plans, json.loads((TINY / "dataset.json").read_text())


def make_predictor(plans: dict, dataset: dict, device: str, tile_step: float, mirroring: bool):  # noqa: ANN201
    import torch  # noqa: PLC0415
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: PLC0415
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: PLC0415
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: PLC0415

    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    heads = manager.get_label_manager(dataset).num_segmentation_heads
    network = nnUNetTrainer.build_network_architecture(manager, configuration, 1, heads,
                                                       enable_deep_supervision=False)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(tile_step_size=tile_step, use_mirroring=mirroring,
                                    perform_everything_on_device=device == "cuda", device=torch.device(device),
                                    allow_tqdm=False)
        predictor.manual_initialization(network, manager, configuration, [network.state_dict()], dataset,
                                        "nnUNetTrainer", (0, 1, 2))
    parameters = sum(p.numel() for p in network.parameters())
    return predictor, configuration, parameters


def tiles(shape_zyx: tuple[int, ...], patch: list[int], step: float) -> int:
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window  # noqa: PLC0415

    padded = [max(s, p) for s, p in zip(shape_zyx, patch)]
    return int(np.prod([len(s) for s in compute_steps_for_sliding_window(padded, patch, step)]))


def run_once(predictor, volume: np.ndarray, spacing: float, device: str) -> float:  # noqa: ANN001
    import torch  # noqa: PLC0415

    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        predictor.predict_single_npy_array(volume[None], {"spacing": [spacing] * 3}, None, None, True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def configuration_heads(predictor) -> int:  # noqa: ANN001
    return int(predictor.label_manager.num_segmentation_heads)


class ZeroNetwork:
    """Stands in for the network: the pipeline around it runs for real, the convolutions do not."""

    def __new__(cls, heads: int):  # noqa: ANN204 - returns an nn.Module
        import torch  # noqa: PLC0415

        class Zero(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.zeros((x.shape[0], heads, *x.shape[2:]), dtype=x.dtype, device=x.device)

        return Zero()


def network_seconds_per_tile(predictor, patch: list[int], device: str, repeats: int) -> float:  # noqa: ANN001
    """One tile's network work as nnU-Net does it (forward + mirrored forwards), median of runs."""
    import torch  # noqa: PLC0415

    predictor.network = predictor.network.to(device).eval()
    x = torch.randn((1, 1, *patch), device=device)
    times = []
    with torch.inference_mode(), (torch.autocast("cuda") if device == "cuda" else contextlib.nullcontext()):
        predictor._internal_maybe_mirror_and_predict(x)  # warm-up
        for _ in range(max(repeats, 1)):
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            predictor._internal_maybe_mirror_and_predict(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def benchmark(arch: str, args: argparse.Namespace) -> dict:
    import torch  # noqa: PLC0415

    shape_zyx = tuple(int(v) for v in reversed(args.shape.split(",")))  # --shape is i,j,k
    plans, dataset = fullres_plans(shape_zyx, args.spacing) if arch == "fullres" else tiny_plans(args.spacing)
    predictor, configuration, parameters = make_predictor(plans, dataset, args.device, args.tile_step,
                                                          not args.no_mirroring)
    patch = list(configuration.patch_size)
    rng = np.random.default_rng(0)
    full_tiles = tiles(shape_zyx, patch, args.tile_step)
    mirrors = 8 if not args.no_mirroring else 1
    record = {"arch": arch, "parameters": parameters, "patch_size": patch,
              "features_per_stage": list(configuration.network_arch_init_kwargs["features_per_stage"]),
              "volume_ijk": args.shape, "spacing_mm": args.spacing, "tile_step_size": args.tile_step,
              "mirroring": not args.no_mirroring, "tiles_full_volume": full_tiles,
              "network_passes_full_volume": full_tiles * mirrors}
    if args.device == "cuda":
        run_once(predictor, rng.normal(40, 30, patch).astype(np.float32), args.spacing, args.device)  # warm-up
        torch.cuda.reset_peak_memory_stats()
    per_tile = network_seconds_per_tile(predictor, patch, args.device, args.repeats)
    record["network_seconds_per_tile"] = round(per_tile, 4)
    estimate = per_tile * full_tiles
    if args.device == "cuda" or estimate <= args.budget_s:
        volume = rng.normal(40, 30, shape_zyx).astype(np.float32)
        times = [run_once(predictor, volume, args.spacing, args.device) for _ in range(args.repeats)]
        record.update(measured="full volume", seconds_per_volume=round(float(np.median(times)), 2),
                      runs_s=[round(t, 2) for t in times])
    else:
        # everything but the network, on the full volume: preprocessing, the sliding-window loop with
        # Gaussian weighting and accumulation, resampling back, probabilities
        volume = rng.normal(40, 30, shape_zyx).astype(np.float32)
        real = (predictor.network, predictor.list_of_parameters)
        predictor.network, predictor.list_of_parameters = ZeroNetwork(configuration_heads(predictor)), [{}]
        rest = run_once(predictor, volume, args.spacing, args.device)
        predictor.network, predictor.list_of_parameters = real
        record.update(measured="network per tile x tiles + everything else run on the full volume",
                      rest_of_pipeline_s=round(rest, 1), network_s_extrapolated=round(estimate, 1),
                      seconds_per_volume=round(rest + estimate, 1))
    record["peak_rss_gib"] = round(peak_rss_gib(), 2)
    if args.device == "cuda":
        record["peak_gpu_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="tiny,fullres", help="comma-separated: tiny, fullres")
    parser.add_argument("--shape", default="512,512,200", help="volume size i,j,k (columns, rows, slices)")
    parser.add_argument("--spacing", type=float, default=1.0, help="isotropic voxel size in mm")
    parser.add_argument("--tile-step", type=float, default=0.5)
    parser.add_argument("--no-mirroring", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="CPU: run the full volume only when one-tile timing predicts less than this")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `dtt segment` does; set before torch loads
    import torch  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here")
    machine = {"platform": platform.platform(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()], "torch": torch.__version__,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None}
    results = []
    for arch in [a.strip() for a in args.arch.split(",") if a.strip()]:
        result = benchmark(arch, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    machine["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report = {"machine": machine, "device": args.device, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
