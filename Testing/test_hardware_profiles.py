"""Precision table and hardware profiles against the design (ADR-012).

The expected values are written out here, independently of profiles.json, so a wrong edit
of the JSON fails these tests instead of redefining what is "right".
"""

from __future__ import annotations

import copy
import json

import pytest

from DTTLib.errors import DTTError, InputError
from DTTLib.hardware import (
    PROFILES_PATH,
    HardwareInfo,
    choose_precision,
    choose_profile,
    env_report,
    load_profile_table,
    profile_names,
    validate_profile_data,
)
from DTTLib.hardware.table import table_from_data

GIB = 1024**3
MIB = 1024**2
#: The design's tolerance, written independently: the N GB class starts at N * 0.9 GiB.
TOLERANCE = 0.10
EXPECTED_NAMES = {"kaggle_t4", "colab_t4", "colab_a100", "local_8gb", "local_16gb",
                  "local_24gb", "datacenter_80gb", "cpu_only"}


def design_precision(vram_bytes: int | None, gpu: bool, bf16: bool, bnb: bool) -> str:
    """The design table, independent of the implementation."""
    if not gpu:
        return "cpu"
    gib = (vram_bytes or 0) / GIB
    if gib >= 16 * (1 - TOLERANCE):
        return "bf16" if bf16 else "fp16"
    if gib >= 12 * (1 - TOLERANCE):
        return "fp16"
    if gib >= 8 * (1 - TOLERANCE):
        return "nf4" if bnb else "cpu"
    return "cpu"


def gpu(name: str, total_memory: int, capability: tuple[int, int], platform: str = "local",
        bnb: bool = False, count: int = 1) -> HardwareInfo:
    return HardwareInfo(gpu_available=True, gpu_name=name, gpu_count=count, vram_total_bytes=total_memory,
                        compute_capability=capability, bf16_supported=capability[0] >= 8, cpu_cores=4,
                        platform=platform, torch_version="2.14.1", cuda_version="13.0",
                        bitsandbytes_available=bnb)


NO_GPU = HardwareInfo(cpu_cores=2, platform="local", notes=("torch is not installed: CPU only",))

# (id, hardware, expected precision, expected profile, expected narrative backend)
# total_memory values are what torch reports on those cards (below the nominal size).
CASES = [
    ("kaggle T4", gpu("Tesla T4", 15_828_320_256, (7, 5), "kaggle", count=2), "fp16", "kaggle_t4", "medgemma-4b"),
    ("colab T4", gpu("Tesla T4", 15_835_660_288, (7, 5), "colab"), "fp16", "colab_t4", "medgemma-4b"),
    ("colab L4", gpu("NVIDIA L4", 23_580_639_232, (8, 9), "colab"), "bf16", "colab_t4", "medgemma-4b"),
    ("colab A100 40GB", gpu("NVIDIA A100-SXM4-40GB", 42_474_471_424, (8, 0), "colab"), "bf16", "colab_a100", "medgemma-4b"),
    ("colab A100 80GB", gpu("NVIDIA A100-SXM4-80GB", 85_174_272_000, (8, 0), "colab"), "bf16", "colab_a100", "medgemma-4b"),
    ("RTX 4090 24GB", gpu("NVIDIA GeForce RTX 4090", 25_393_692_672, (8, 9)), "bf16", "local_24gb", "medgemma-4b"),
    ("RTX 4080 16GB", gpu("NVIDIA GeForce RTX 4080", 17_171_480_576, (8, 9)), "bf16", "local_16gb", "medgemma-4b"),
    ("V100 16GB", gpu("Tesla V100-PCIE-16GB", 16_935_419_904, (7, 0)), "fp16", "local_16gb", "medgemma-4b"),
    ("RTX 3060 12GB", gpu("NVIDIA GeForce RTX 3060", 12_622_168_064, (8, 6)), "fp16", "local_16gb", "medgemma-4b"),
    ("RTX 3080 10GB + bnb", gpu("NVIDIA GeForce RTX 3080", 10_504_634_368, (8, 6), bnb=True), "nf4", "local_8gb", "medgemma-4b"),
    ("RTX 3080 10GB no bnb", gpu("NVIDIA GeForce RTX 3080", 10_504_634_368, (8, 6)), "cpu", "cpu_only", "template"),
    ("RTX 3070 8GB + bnb", gpu("NVIDIA GeForce RTX 3070", 8_361_017_344, (8, 6), bnb=True), "nf4", "local_8gb", "medgemma-4b"),
    ("6GB card", gpu("NVIDIA GeForce GTX 1660", 6_222_839_808, (7, 5), bnb=True), "cpu", "cpu_only", "template"),
    ("H100 80GB", gpu("NVIDIA H100 80GB HBM3", 85_045_231_616, (9, 0)), "bf16", "datacenter_80gb", "medgemma-27b"),
    ("H200 141GB", gpu("NVIDIA H200", 150_110_011_392, (9, 0)), "bf16", "datacenter_80gb", "medgemma-27b"),
    ("A100 80GB local", gpu("NVIDIA A100 80GB PCIe", 85_097_971_712, (8, 0)), "bf16", "datacenter_80gb", "medgemma-27b"),
    ("kaggle no GPU", HardwareInfo(platform="kaggle"), "cpu", "cpu_only", "template"),
    ("no GPU", NO_GPU, "cpu", "cpu_only", "template"),
]


@pytest.mark.parametrize(("info", "precision", "profile", "backend"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_design_table_and_named_profiles(info, precision, profile, backend):
    assert design_precision(info.vram_total_bytes, info.gpu_available, info.bf16_supported,
                            info.bitsandbytes_available) == precision  # the table above is self-consistent
    decision = choose_profile(info, environ={})
    assert choose_precision(info).precision == precision
    assert (decision.name, decision.precision.precision, decision.source) == (profile, precision, "auto")
    assert decision.precision.device == ("cpu" if precision == "cpu" else "cuda")
    narrative = decision.settings["narrative"]
    assert narrative["backend"] == backend
    assert narrative["precision"] == (None if precision == "cpu" else precision)
    assert (narrative["max_context_tokens"], narrative["max_context_tokens_multi_timepoint"],
            narrative["max_images"]) == (2048, 4096, 3)
    devices = {phase["device"] for phase in decision.settings.values()}
    assert devices == ({"cpu"} if precision == "cpu" else {"cuda"})
    embedding = decision.settings["embeddings"]["precision"]
    assert embedding == {"cpu": "fp32", "nf4": "fp16"}.get(precision, precision)
    assert "auto" not in json.dumps(decision.settings)
    assert decision.reasons and all(isinstance(r, str) and r for r in decision.reasons)


def test_every_named_profile_is_reached_by_some_case():
    assert {c[3] for c in CASES} == EXPECTED_NAMES == set(profile_names())


@pytest.mark.parametrize(("nominal", "bf16", "bnb", "at_class", "below_class"), [
    (16, True, True, "bf16", "fp16"),
    (16, False, True, "fp16", "fp16"),
    (12, True, True, "fp16", "nf4"),
    (8, True, True, "nf4", "cpu"),
    (8, True, False, "cpu", "cpu"),
])
def test_class_boundaries(nominal, bf16, bnb, at_class, below_class):
    def precision(total: int) -> str:
        info = HardwareInfo(gpu_available=True, gpu_name="x", gpu_count=1, vram_total_bytes=total,
                            bf16_supported=bf16, bitsandbytes_available=bnb)
        return choose_precision(info).precision

    threshold = nominal * (1 - TOLERANCE) * GIB
    assert precision(nominal * GIB) == at_class            # a card reporting exactly N GiB
    assert precision(int(threshold) + MIB) == at_class     # just inside the tolerance
    assert precision(int(threshold) - MIB) == below_class  # just outside it


def test_bf16_unsupported_16gb_class_uses_fp16_and_says_why():
    t4 = CASES[0][1]
    decision = choose_precision(t4)
    assert decision.precision == "fp16"
    text = " ".join(decision.reasons)
    assert "Tesla T4" in text and "14.7 GiB" in text and "16 GB class" in text
    assert "fp16 because the GPU does not support bf16" in text


def test_nf4_without_bitsandbytes_falls_back_and_says_why():
    decision = choose_precision(gpu("RTX 3080", 10_504_634_368, (8, 6), bnb=False))
    assert decision.precision == "cpu" and decision.device == "cpu"
    assert "bitsandbytes is not installed" in " ".join(decision.reasons)


def test_nf4_needs_a_gpu_even_with_bitsandbytes():
    # bitsandbytes "loads" 4-bit on the CPU without complaint: never rely on it to refuse.
    info = HardwareInfo(gpu_available=False, vram_total_bytes=10 * GIB, bitsandbytes_available=True)
    assert choose_precision(info).precision == "cpu"
    assert choose_profile(info, environ={}).name == "cpu_only"


# -- requested profiles -------------------------------------------------------------------

RTX4090 = CASES[5][1]
RTX3080 = CASES[10][1]


def test_request_honoured_when_the_hardware_can_run_it():
    decision = choose_profile(RTX4090, "local_16gb", environ={})
    assert (decision.name, decision.source, decision.precision.precision) == ("local_16gb", "argument", "bf16")
    assert decision.settings["narrative"]["precision"] == "bf16"
    assert any("requested" in r for r in decision.reasons)


def test_request_from_environment_and_argument_precedence():
    assert choose_profile(RTX4090, environ={"DTT_PROFILE": "local_16gb"}).source == "DTT_PROFILE"
    assert choose_profile(RTX4090, environ={"DTT_PROFILE": " local_16gb "}).name == "local_16gb"
    assert choose_profile(RTX4090, "cpu_only", environ={"DTT_PROFILE": "local_16gb"}).name == "cpu_only"
    assert choose_profile(RTX4090, environ={"DTT_PROFILE": ""}).name == "local_24gb"


def test_request_cpu_only_on_a_gpu_machine_lowers_the_precision():
    decision = choose_profile(RTX4090, "cpu_only", environ={})
    assert (decision.precision.precision, decision.precision.device) == ("cpu", "cpu")
    assert decision.settings["narrative"]["backend"] == "template"
    assert any("cpu_only" in r and "bf16" in r for r in decision.reasons)


def test_request_nf4_profile_on_a_large_gpu_with_bitsandbytes():
    info = gpu("NVIDIA GeForce RTX 4090", 25_393_692_672, (8, 9), bnb=True)
    decision = choose_profile(info, "local_8gb", environ={})
    assert decision.precision.precision == "nf4"
    assert decision.settings["embeddings"]["precision"] == "fp16"


def test_platform_profile_on_another_platform_is_allowed_with_a_note():
    decision = choose_profile(gpu("Tesla T4", 15_828_320_256, (7, 5), "local"), "kaggle_t4", environ={})
    assert decision.name == "kaggle_t4" and decision.precision.precision == "fp16"
    assert "meant for kaggle" in decision.reasons[-1]


@pytest.mark.parametrize(("info", "requested", "words"), [
    (RTX4090, "datacenter_80gb", ["80 GB class", "local_24gb"]),
    (RTX3080, "local_8gb", ["bitsandbytes", "cpu_only"]),
    (RTX3080, "local_16gb", ["12 GB class", "cpu_only"]),
    (NO_GPU, "kaggle_t4", ["needs a GPU", "torch is not installed", "cpu_only"]),
    (CASES[0][1], "colab_a100", ["40 GB class", "kaggle_t4"]),
])
def test_request_refused_says_why_and_what_fits(info, requested, words):
    with pytest.raises(InputError) as caught:
        choose_profile(info, requested, environ={})
    message = str(caught.value)
    assert requested in caught.value.problem
    for word in words:
        assert word in message


def test_request_refused_from_environment_names_the_variable():
    with pytest.raises(InputError, match="DTT_PROFILE"):
        choose_profile(NO_GPU, environ={"DTT_PROFILE": "local_24gb"})


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(InputError) as caught:
        choose_profile(RTX4090, "gigantic", environ={})
    assert "gigantic" in caught.value.problem
    for name in EXPECTED_NAMES:
        assert name in caught.value.fix


# -- the JSON itself ----------------------------------------------------------------------

def _raw() -> dict:
    return json.loads(PROFILES_PATH.read_text(encoding="utf-8"))


def test_json_profiles_have_every_required_key():
    raw = _raw()
    assert raw["vram_tolerance"]["fraction"] == TOLERANCE
    assert set(raw["profiles"]) == EXPECTED_NAMES
    for name, profile in raw["profiles"].items():
        assert profile["description"].strip(), name
        assert set(profile["match"]) >= {"platforms", "precisions", "min_vram_gb", "max_vram_gb"}, name
        settings = profile["settings"]
        assert set(settings["segmentation"]) >= {"model", "device", "batch_size"}, name
        assert set(settings["embeddings"]) >= {"model", "device", "precision", "batch_size"}, name
        assert set(settings["narrative"]) >= {"backend", "device", "precision", "max_context_tokens",
                                              "max_context_tokens_multi_timepoint", "max_images"}, name
        assert settings["narrative"]["backend"] in {"medgemma-4b", "medgemma-27b", "template"}, name
        assert settings["narrative"]["max_images"] <= 3
        assert settings["narrative"]["max_context_tokens"] <= 2048
        assert settings["narrative"]["max_context_tokens_multi_timepoint"] <= 4096
    assert validate_profile_data(raw) == []


def test_json_ranges_never_ambiguous_for_a_platform():
    """At every VRAM size, platform and precision, at most one platform-specific and at most
    one generic profile match, and a generic one always does (sweep in 0.1 GiB steps)."""
    profiles = _raw()["profiles"]

    def matching(platform_group: str, gib: float, precision: str) -> list[str]:
        found = []
        for name, p in profiles.items():
            m = p["match"]
            low = m["min_vram_gb"] * (1 - TOLERANCE) if m["min_vram_gb"] is not None else None
            high = m["max_vram_gb"] * (1 - TOLERANCE) if m["max_vram_gb"] is not None else None
            if (platform_group in m["platforms"] and precision in m["precisions"]
                    and (low is None or gib >= low) and (high is None or gib < high)):
                found.append(name)
        return found

    for step in range(0, 2000):
        gib = int(step / 10 * GIB) / GIB  # what a card reporting whole bytes would give
        for precision in ("bf16", "fp16", "nf4", "cpu"):
            for platform in ("kaggle", "colab", "local"):
                assert len(matching(platform, gib, precision)) <= 1, (platform, gib, precision)
            assert len(matching("any", gib, precision)) <= 1, (gib, precision)
        size = int(gib * GIB)
        produced = design_precision(size, True, True, True), design_precision(size, True, False, False)
        for precision in produced:
            assert len(matching("any", gib, precision)) == 1, (gib, precision)


@pytest.mark.parametrize("break_it", [
    lambda d: d["profiles"]["local_16gb"]["settings"]["narrative"].pop("max_images"),
    lambda d: d["profiles"]["local_16gb"]["match"].update(max_vram_gb=40),
    lambda d: d["profiles"]["cpu_only"]["settings"]["segmentation"].update(device="cuda"),
    lambda d: d["profiles"]["local_8gb"]["settings"]["narrative"].update(precision="auto"),
    lambda d: d["profiles"].pop("local_24gb"),
    lambda d: d["precision_rules"].pop(),
    lambda d: d["vram_tolerance"].update(fraction=0.7),
], ids=["missing key", "overlap", "cpu profile on cuda", "auto below 12 GB", "coverage gap",
        "no cpu row", "silly tolerance"])
def test_validation_catches_broken_tables(break_it):
    data = copy.deepcopy(_raw())
    break_it(data)
    assert validate_profile_data(data)
    with pytest.raises(DTTError, match="invalid"):
        table_from_data(data)


def test_table_loaded_once_and_settings_cannot_be_mutated_through_it():
    table = load_profile_table()
    assert load_profile_table() is table
    decision = choose_profile(RTX4090, environ={})
    decision.settings["narrative"]["backend"] = "changed"
    assert table.profiles["local_24gb"].settings["narrative"]["backend"] == "medgemma-4b"
    assert choose_profile(RTX4090, environ={}).settings["narrative"]["backend"] == "medgemma-4b"


def test_env_report_is_json_ready_and_explains():
    info = CASES[0][1]
    report = env_report(info, choose_profile(info, environ={}))
    round_trip = json.loads(json.dumps(report))
    assert round_trip == report
    assert report["hardware"]["gpu_name"] == "Tesla T4"
    assert report["hardware"]["vram_total_gib"] == 14.7
    assert report["hardware"]["vram_class_gb"] == 16
    assert report["hardware"]["compute_capability"] == [7, 5]
    assert report["profile"]["name"] == "kaggle_t4" and report["profile"]["source"] == "auto"
    assert report["precision"] == {"precision": "fp16", "device": "cuda"}
    assert any("GPU 'Tesla T4' with 14.7 GiB reported (16 GB class): fp16 because the GPU does not support bf16" in r
               for r in report["reasons"])
    cpu = env_report(NO_GPU, choose_profile(NO_GPU, environ={}))
    assert cpu["hardware"]["vram_class_gb"] is None and cpu["precision"]["device"] == "cpu"
    assert any("torch is not installed" in r for r in cpu["reasons"])
