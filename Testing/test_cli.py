"""The ``dtt`` command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def dtt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DTTLib.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)


def test_env_json_reports_profile_precision_and_reasons():
    out = dtt("env", "--json", env={"DTT_PROFILE": ""})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    # this machine (and CI) has no GPU: the design table says CPU and the template narrative
    assert report["hardware"]["gpu_available"] is False
    assert report["profile"]["name"] == "cpu_only"
    assert report["precision"]["precision"] == "cpu"
    assert report["profile"]["settings"]["narrative"]["backend"] == "template"
    assert report["reasons"] and all(isinstance(r, str) and r for r in report["reasons"])
    assert report["hardware"]["cpu_cores"] == len(os.sched_getaffinity(0))


def test_env_refuses_a_profile_the_machine_cannot_run():
    out = dtt("env", "--profile", "datacenter_80gb")
    assert out.returncode == 2
    assert "cpu_only" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_info_prints_the_geometry_of_real_mr(shared_data):
    out = dtt("info", str(shared_data / "imaging" / "brain1_image.nrrd"), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["size_ijk"] == [256, 256, 25]
    np.testing.assert_allclose(info["spacing_mm"], [0.78125, 0.78125, 6.5])
    assert info["voxel_type"] == "int16"
    # header: space left-posterior-superior, space directions (+i, -j, +k) in LPS, so in RAS
    # the i axis points left, j anterior, k superior
    np.testing.assert_allclose(np.diag(info["direction_ras"]), [-1, 1, 1])
    assert info["orientation"] == "LAS"


@pytest.mark.parametrize("args,message", [
    (("info", "no/such/file.nrrd"), "does not exist"),
    (("info", "README.md"), "README.md"),
])
def test_bad_input_is_one_clear_line(args, message):
    out = dtt(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_demo_brain_case_runs_the_main_job_on_real_mr(shared_data, tmp_path, mrml):
    out = dtt("demo", "--cases", "brain", "--out", str(tmp_path), "--data", str(shared_data / "imaging"))
    assert out.returncode == 0, out.stderr
    assert "report.html" in out.stdout
    document = json.loads((tmp_path / "brain" / "twin.json").read_text())
    rows = {r["timepoint"]: r for r in document["twin"]["lesion_table"]}
    # shared/data/README.md: expert label volumes ~16,413 and ~1,797 mm^3; the model's
    # segmentation from one box per scan must land in the same range (not a copy of the label)
    assert 0.6 * 16413 <= rows[0]["volume_mm3"] <= 1.3 * 16413
    assert 0.5 * 1797 <= rows[1]["volume_mm3"] <= 1.6 * 1797
    assert document["twin"]["recist"]["best_overall_response"] in ("PR", "CR")

    from DTTLib.mrml.hierarchy import describe
    from DTTLib.mrml.storage import load_scene_mrb

    load_scene_mrb(tmp_path / "brain" / "scene.mrb")
    tree = describe()
    assert len(tree) == 1 and len(tree[0].studies) == 2
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2


def test_demo_without_data_names_the_fix(tmp_path):
    out = dtt("demo", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "empty"))
    assert out.returncode == 2 and "--data" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("code,words", [(28, "No space left on device"), (13, "Permission denied")])
def test_a_full_disk_or_a_read_only_folder_is_one_clear_line(monkeypatch, capsys, tmp_path, code, words):
    """ENOSPC / EACCES while writing are the user's to fix: one line naming the file and the fix,
    exit 2 — not an 'internal error, please report it'."""
    import errno as errnos

    from DTTLib.cli.main import main
    from DTTLib.pipeline import run as pipeline

    assert code in (errnos.ENOSPC, errnos.EACCES)

    def full_disk(*_args, **_kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "out" / ".staging-1" / "scene.mrb"))

    monkeypatch.setattr(pipeline, "run_case", full_disk)
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and words in line and "scene.mrb" in line
    assert "free disk space" in line and "earlier run are kept" in line and "internal error" not in line


def test_other_os_errors_stay_internal_errors(monkeypatch, capsys, tmp_path):
    from DTTLib.cli.main import main
    from DTTLib.pipeline import run as pipeline

    def broken(*_args, **_kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(pipeline, "run_case", broken)
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "internal error" in capsys.readouterr().err
