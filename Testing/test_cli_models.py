"""``dtt models`` as a user runs it (real subprocesses, a private cache), and MedSAM ViT-B found
through the local-folder setting by ``dtt segment`` — no network: the one download test replaces
the hub transfer with a copy from a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DTTLib.imaging.io import write_image
from DTTLib.imaging.volume import ImageVolume

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DTT_CACHE_DIR", str(folder))
    return folder


def dtt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DTTLib.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ), timeout=300)


def where(model_id: str) -> dict:
    out = dtt("models", "list", "--json")
    assert out.returncode == 0, out.stderr
    return {row["id"]: row for row in json.loads(out.stdout)["models"]}[model_id]


@pytest.fixture(scope="module")
def tiny_medsam(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from tiny_models import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("medsam_weights"))


def test_list_says_where_each_model_is(cache):
    out = dtt("models", "list", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["cache"] == str(cache)
    rows = {row["id"]: row for row in report["models"]}
    assert rows["litemedsam"]["where"].startswith("bundled")
    assert rows["medsam-vit-base"]["where"] == "not downloaded" and rows["medsam-vit-base"]["licence"] == "Apache-2.0"
    assert rows["medgemma-4b"]["gated"] is True
    text = dtt("models", "list").stdout
    assert f"model cache: {cache}" in text and "medsam-vit-base" in text


def test_medsam_segments_from_the_folder_the_user_set_and_says_how_to_get_weights_otherwise(cache, tiny_medsam,
                                                                                            tmp_path):
    rng = np.random.default_rng(0)
    k, j, i = np.indices((5, 48, 48))
    values = np.where((i - 24) ** 2 + (j - 24) ** 2 + ((k - 2) * 3) ** 2 <= 100, 600.0, 200.0)
    image = tmp_path / "lesion.nrrd"
    write_image(ImageVolume((values + rng.normal(0, 10, values.shape)).astype(np.float32), (1.0, 1.0, 3.0)), image)
    args = (str(image), "--box", "14,14,2,34,34,2", "--model", "medsam", "--json")
    missing = dtt("segment", *args)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "dtt models download medsam-vit-base" in missing.stderr and "dtt models use" in missing.stderr
    set_folder = dtt("models", "use", "medsam-vit-base", str(tiny_medsam))
    assert set_folder.returncode == 0, set_folder.stderr
    assert where("medsam-vit-base")["where"] == "local folder"
    assert where("medsam-vit-base")["path"] == str(tiny_medsam.resolve())
    found = dtt("segment", *args)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["model"] == "medsam"  # the random tiny model ran from that folder
    cleared = dtt("models", "use", "medsam-vit-base", "--clear")
    assert cleared.returncode == 0 and where("medsam-vit-base")["where"] == "not downloaded"
    wrong = dtt("models", "use", "medsam-vit-base", str(tmp_path))  # no config.json there
    assert wrong.returncode == 2 and "config.json" in wrong.stderr


def test_download_verify_and_delete(cache, tiny_medsam, monkeypatch, capsys):
    """The hub transfer is the only thing replaced (tests never download): it copies the tiny
    model's files into the cache folder it is given, reporting progress as huggingface_hub does."""
    from DTTLib.cli.main import main
    from DTTLib.models import cache as model_cache

    def copy_from_folder(repo_id, revision, target, token, progress):
        assert repo_id == "flaviagiammarino/medsam-vit-base"
        files = sorted(tiny_medsam.iterdir())
        total = sum(f.stat().st_size for f in files)
        done = 0
        for source in files:
            (target / source.name).write_bytes(source.read_bytes())
            done += source.stat().st_size
            progress(repo_id, done, total)

    monkeypatch.setattr(model_cache, "hub_download", copy_from_folder)
    assert main(["models", "download", "medsam-vit-base"]) == 0
    captured = capsys.readouterr()
    assert "downloaded to" in captured.out and "100 %" in captured.err
    assert main(["models", "download", "medsam-vit-base"]) == 0 and "already downloaded" in capsys.readouterr().out
    assert main(["models", "verify", "medsam-vit-base", "--full"]) == 0
    assert "SHA-256 match" in capsys.readouterr().out
    weights = cache / "models" / "medsam-vit-base" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte altered
    weights.write_bytes(bytes(data))
    assert main(["models", "verify", "medsam-vit-base"]) == 0  # the quick check compares sizes only
    capsys.readouterr()
    assert main(["models", "verify", "medsam-vit-base", "--full"]) == 1
    assert "damaged" in capsys.readouterr().out
    size = sum(f.stat().st_size for f in weights.parent.iterdir())
    assert main(["models", "delete", "medsam-vit-base"]) == 0
    assert f"{size / 1e6:.1f} MB freed" in capsys.readouterr().out and not weights.parent.exists()
    assert main(["models", "delete", "medsam-vit-base"]) == 0
    assert "nothing downloaded" in capsys.readouterr().out
    assert main(["models", "verify", "medsam-vit-base"]) == 2  # not downloaded: one clear line
    assert "dtt models download medsam-vit-base" in capsys.readouterr().err
