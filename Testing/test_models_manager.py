"""Model catalog, weight cache (local fake remote, injected downloader) and the phase manager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from DTTLib.errors import InputError, MissingDependencyError, ResourceError
from DTTLib.hardware import HardwareInfo, choose_profile
from DTTLib.models import ModelManager, ModelStore, default_cache_dir, four_bit_possible, load_catalog, plan_for, sha256_file
from DTTLib.models.precision import check_plan

GIB = 1024**3
CPU = HardwareInfo(cpu_cores=2)
GPU24 = HardwareInfo(gpu_available=True, gpu_name="RTX 4090", gpu_count=1, vram_total_bytes=24 * GIB,
                     compute_capability=(8, 9), bf16_supported=True, cpu_cores=8)
GPU8_BNB = HardwareInfo(gpu_available=True, gpu_name="RTX 3070", gpu_count=1, vram_total_bytes=int(7.8 * GIB),
                        compute_capability=(8, 6), bf16_supported=True, bitsandbytes_available=True)


def test_catalog_has_the_required_models_with_sources_and_licences():
    catalog = load_catalog()
    assert {"medgemma-4b", "medgemma-27b", "medsiglip-448", "medsam-vit-base", "litemedsam"} <= set(catalog)
    assert catalog["medsam-vit-base"].hub_id == "flaviagiammarino/medsam-vit-base"
    assert catalog["litemedsam"].kind == "bundled" and not catalog["litemedsam"].gated
    assert catalog["medgemma-4b"].gated and catalog["medsiglip-448"].input["embedding_dim"] == 1152
    assert catalog["medgemma-27b"].vram_gb["bf16"] > 40 > catalog["medgemma-27b"].vram_gb["nf4"]


def test_cache_dir_follows_the_environment(tmp_path):
    assert default_cache_dir({"DTT_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert default_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/x/DigitalTwinTumor")


def _fake_remote(tmp_path: Path) -> Path:
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text('{"model_type": "fake"}')
    (remote / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    return remote


def test_download_writes_a_checksummed_manifest_then_uses_the_cache(tmp_path):
    remote = _fake_remote(tmp_path)
    calls, progress = [], []

    def downloader(repo, revision, target, token, report):
        calls.append(repo)
        for f in remote.iterdir():
            (target / f.name).write_bytes(f.read_bytes())
            if report:
                report(repo, f.stat().st_size, 10240)

    store = ModelStore(tmp_path / "cache", downloader=downloader, token="t")
    first = store.resolve("medsam-vit-base", progress=lambda *a: progress.append(a))
    assert first.how == "download" and calls == ["flaviagiammarino/medsam-vit-base"] and progress
    manifest = store.manifest("medsam-vit-base")
    assert manifest["files"]["model.safetensors"]["sha256"] == sha256_file(remote / "model.safetensors")
    assert store.resolve("flaviagiammarino/medsam-vit-base").how == "cache" and len(calls) == 1
    # tampering is found by the full check; a truncated file already by the quick one
    (first.path / "model.safetensors").write_bytes(b"x" * 10240)
    assert store.verify("medsam-vit-base") == [] and store.verify("medsam-vit-base", full=True)
    (first.path / "model.safetensors").write_bytes(b"x")
    assert store.verify("medsam-vit-base") == ["model.safetensors has the wrong size"]
    assert store.resolve("medsam-vit-base").how == "download" and len(calls) == 2
    assert store.delete("medsam-vit-base") > 10000 and not store.cache_path("medsam-vit-base").exists()
    assert store.delete("medsam-vit-base") == 0


def test_local_folder_setting_wins_and_offline_miss_is_explained(tmp_path):
    remote = _fake_remote(tmp_path)
    store = ModelStore(tmp_path / "cache", downloader=lambda *a: pytest.fail("must not download"))
    store.set_local_folder("medgemma-4b", remote)
    assert store.resolve("medgemma-4b").path == remote.resolve()
    store.set_local_folder("medgemma-4b", None)
    with pytest.raises(MissingDependencyError, match="gated.*HF_TOKEN"):
        store.resolve("medgemma-4b", allow_download=False)
    with pytest.raises(InputError, match="no config.json"):
        store.set_local_folder("medgemma-4b", tmp_path)


def test_gated_refusal_names_token_and_licence(tmp_path):
    class GatedRepoError(Exception):
        pass

    def refuse(*args):
        raise GatedRepoError("401 Client Error: access to model google/medgemma-4b-it is restricted")

    with pytest.raises(MissingDependencyError) as info:
        ModelStore(tmp_path, downloader=refuse).resolve("medgemma-4b")
    assert "licence" in info.value.message and "HF_TOKEN" in info.value.message
    assert not ModelStore(tmp_path).is_cached("medgemma-4b")


def test_four_bit_needs_a_gpu_and_bitsandbytes_checked_by_us():
    assert four_bit_possible(CPU, bnb_installed=True)[0] is False  # bnb would load on the CPU silently
    assert four_bit_possible(GPU8_BNB, bnb_installed=False)[0] is False
    assert four_bit_possible(GPU8_BNB, bnb_installed=True)[0] is True
    settings = choose_profile(GPU8_BNB).settings
    assert settings["narrative"]["precision"] == "nf4"
    assert plan_for(settings["narrative"], GPU8_BNB, bnb_installed=True).precision == "nf4"
    fallback = plan_for(settings["narrative"], GPU8_BNB, bnb_installed=False)  # the real state here
    assert fallback.precision == "fp16" and fallback.device_map == "auto" and "bitsandbytes" in fallback.reasons[-1]
    from DTTLib.models.precision import LoadPlan
    with pytest.raises(ResourceError, match="GPU"):
        check_plan(LoadPlan("nf4", "cuda"), CPU, bnb_installed=True)


def test_precision_comes_from_the_hardware_profile():
    gpu = plan_for(choose_profile(GPU24).settings["narrative"], GPU24)
    assert (gpu.precision, gpu.device) == ("bf16", "cuda")
    cpu = plan_for(choose_profile(CPU).settings["embeddings"], CPU)
    assert (cpu.precision, cpu.device) == ("fp32", "cpu")
    from DTTLib.models import from_pretrained_kwargs
    import torch
    assert from_pretrained_kwargs(gpu)["dtype"] is torch.bfloat16 and "torch_dtype" not in from_pretrained_kwargs(gpu)


class _Net:
    def __init__(self, name):
        self.name = name


def _manager(tmp_path, info, loads):
    remote = _fake_remote(tmp_path)

    def loader(phase):
        def load(path, plan):
            loads.append((phase, plan.precision, plan.device_map))
            return _Net(phase), None
        return load

    store = ModelStore(tmp_path / "cache")
    for model_id in ("medsam-vit-base", "medsiglip-448", "medgemma-4b"):
        store.set_local_folder(model_id, remote)
    loaders = {p: loader(p) for p in ("segmentation", "embeddings", "narrative")}
    return ModelManager(info, choose_profile(info).settings, store, loaders, bnb_installed=False)


def test_one_phase_resident_at_a_time(tmp_path):
    loads = []
    manager = _manager(tmp_path, CPU, loads)
    manager.load("segmentation", "medsam-vit-base")
    manager.load("embeddings", "medsiglip-448")
    assert list(manager.resident) == ["embeddings"] and "segmentation: unloaded" in manager.events
    manager.load("narrative", "medgemma-4b")
    assert list(manager.resident) == ["narrative"] and manager.free_vram() is None  # no CUDA here
    manager.unload()
    assert manager.resident == {} and [p for p, *_ in loads] == ["segmentation", "embeddings", "narrative"]


def _oom():
    import torch
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_oom_chain_smaller_batch_then_4bit_then_offload_then_clear_error(tmp_path):
    loads = []
    manager = _manager(tmp_path, GPU24, loads)
    manager.bnb_installed = True
    manager.load("embeddings", "medsiglip-448")
    seen = []

    def step(loaded, batch):
        seen.append((batch, loaded.plan.precision, loaded.plan.device_map))
        if loaded.plan.device_map != "auto":
            raise _oom()
        return "done"

    assert manager.run("embeddings", step, batch_size=4) == "done"
    assert seen == [(4, "bf16", None), (2, "bf16", None), (1, "bf16", None), (1, "nf4", None), (1, "fp16", "auto")]
    assert any("4-bit" in e for e in manager.events) and any("CPU offload" in e for e in manager.events)

    def always(loaded, batch):
        raise _oom()

    with pytest.raises(ResourceError, match="not enough memory") as info:
        manager.run("embeddings", always)
    assert "scene is unchanged" in info.value.message and manager.resident == {}
    with pytest.raises(ValueError):  # other errors are not swallowed
        manager.load("embeddings", "medsiglip-448")
        manager.run("embeddings", lambda loaded, batch: (_ for _ in ()).throw(ValueError("bug")))


def test_without_bitsandbytes_oom_skips_4bit_and_says_why(tmp_path):
    manager = _manager(tmp_path, GPU24, [])
    manager.load("narrative", "medgemma-4b")
    plans = []

    def step(loaded, batch):
        plans.append(loaded.plan.device_map)
        if loaded.plan.device_map is None:
            raise RuntimeError("CUDA error: out of memory")
        return 1

    assert manager.run("narrative", step) == 1 and plans == [None, "auto"]
    assert any("bitsandbytes" in e for e in manager.events)


def test_split_device_map_keeps_decoder_layers_whole():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from DTTLib.models.loaders import split_device_map

    config = Gemma3TextConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    layer_bytes = 4 * (4 * 64 * 64 + 3 * 64 * 128)
    device_map = split_device_map(Gemma3ForCausalLM, config, {0: int(2.5 * layer_bytes), 1: 10 * layer_bytes, "cpu": 10**9})
    layers = [k for k in device_map if ".layers." in k]
    assert layers and all(k.split(".layers.")[1].isdigit() for k in layers)  # whole layers only
    assert {0, 1} <= set(device_map.values())


def test_locate_never_downloads_and_downloaded_counts_a_stopped_download(tmp_path):
    def refuse(*args):
        raise AssertionError("locate must not download")

    store = ModelStore(tmp_path / "cache", downloader=refuse)
    assert store.locate("medsam-vit-base") is None and store.downloaded() == {}
    partial = store.cache_path("medsam-vit-base")
    partial.mkdir(parents=True)
    (partial / "model.safetensors.incomplete").write_bytes(b"x" * 1000)  # a transfer that was stopped
    assert store.locate("medsam-vit-base") is None  # no manifest: not usable
    assert store.downloaded() == {"medsam-vit-base": 1000}  # but it takes space, so it can be deleted
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    store.set_local_folder("medsam-vit-base", mine)
    assert store.locate("medsam-vit-base") == mine.resolve()
    assert store.delete("medsam-vit-base") == 1000 and store.downloaded() == {} and mine.exists()
