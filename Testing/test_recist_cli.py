"""The ``dtt recist`` handler: JSON output on a file, table output, exit codes."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from DTTLib.response.cli import add_recist_parser, run_recist

CASE = {
    "immunotherapy": False, "confirmation_required": True, "min_sd_days": 42,
    "timepoints": [
        {"day": 0, "lesions": [
            {"id": "L1", "organ": "liver", "nodal": False, "ld_mm": 32.0, "sa_mm": 20.0, "target": None},
            {"id": "N1", "organ": "mediastinum", "nodal": True, "ld_mm": 25.0, "sa_mm": 18.0,
             "target": None}],
         "non_target": "none", "new_lesions": False},
        # 50 → 30 (−40 %): PR
        {"day": 56, "lesions": [{"id": "L1", "organ": "liver", "ld_mm": 20.0},
                                {"id": "N1", "organ": "mediastinum", "nodal": True, "sa_mm": 10.0}],
         "non_target": "none", "new_lesions": False},
        # 30 → 8 (L1 gone, node 8 < 10): CR with SOD 8; confirms the PR (28 days later)
        {"day": 84, "lesions": [{"id": "L1", "organ": "liver", "ld_mm": 0.0},
                                {"id": "N1", "organ": "mediastinum", "nodal": True, "sa_mm": 8.0}],
         "non_target": "none", "new_lesions": False},
    ],
}


def parse(argv):
    parser = argparse.ArgumentParser(prog="dtt")
    add_recist_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def call(argv):
    args = parse(argv)
    out, err = io.StringIO(), io.StringIO()
    code = args.handler(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_json_output(tmp_path):
    path = tmp_path / "case.json"
    path.write_text(json.dumps(CASE))
    code, out, err = call(["recist", str(path), "--json"])
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["criteria"] == "RECIST 1.1"
    assert result["baseline_sod_mm"] == 50.0
    rows = result["timepoints"]
    assert [r["day"] for r in rows] == [0, 56, 84]
    assert [r["sod_mm"] for r in rows] == [50.0, 30.0, 8.0]
    assert rows[1]["change_from_baseline_pct"] == pytest.approx(-40.0)
    assert rows[2]["change_from_nadir_pct"] == pytest.approx((8 - 30) / 30 * 100, abs=1e-3)
    assert [r["target_response"] for r in rows[1:]] == ["PR", "CR"]
    assert [r["overall"] for r in rows[1:]] == ["PR", "CR"]
    assert rows[0]["overall"] is None and rows[0]["is_baseline"]
    # PR at 56 confirmed by CR at 84 (28 days); the CR itself is unconfirmed.
    assert result["best_overall_response"] == "PR"
    assert result["best_overall_response_detail"]["confirmed"] is True
    assert {t["id"] for t in result["targets"]} == {"L1", "N1"}
    assert all(t["reason"] for t in result["targets"])
    assert any("CR at day 84 is not yet confirmed" in w for w in result["warnings"])
    for key in ("settings", "lesions", "new_lesion_targets", "volumetric_thresholds",
                "references"):
        assert key in result


def test_table_output(tmp_path):
    path = tmp_path / "case.json"
    path.write_text(json.dumps(CASE))
    code, out, _ = call(["recist", str(path)])
    assert code == 0
    assert "Best overall response: PR" in out
    assert "baseline" in out and "SOD mm" in out


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    (json.dumps({**CASE, "timepoints": [{**CASE["timepoints"][0], "non_target": "stable"}]}),
     "non_target"),
    (json.dumps({"timepoints": []}), "baseline"),
])
def test_bad_input_exit_code_2_one_line(tmp_path, content, words):
    path = tmp_path / "case.json"
    path.write_text(content)
    code, out, err = call(["recist", str(path), "--json"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_missing_file_exit_code_2(tmp_path):
    code, _, err = call(["recist", str(tmp_path / "nope.json")])
    assert code == 2 and err.startswith("error: cannot read")


def test_default_streams(tmp_path, capsys):
    path = tmp_path / "case.json"
    path.write_text(json.dumps(CASE))
    assert run_recist(parse(["recist", str(path), "--json"])) == 0
    assert json.loads(capsys.readouterr().out)["best_overall_response"] == "PR"
