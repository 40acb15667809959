"""The RECIST engine's warnings reach the reader: ``dtt recist``'s text, the ``dtt run`` report
and its terminal summary (the Slicer module's summary is checked by its self-test,
DigitalTwinTumorTest.test_RecistWarningsReachTheSummary, run by test_module_selftests.py).

The cases are built so that the guidelines themselves call for a warning:

* iRECIST, a non-target "further increase" on a timepoint whose non-target status is not PD:
  a further increase confirms iCPD only for PD non-target disease (Seymour et al. 2017), so the
  call cannot count and the reader must hear that it was ignored;
* non-target disease present at baseline but reported as "none" later: it cannot have vanished
  unremarked, so that timepoint's non-target disease is not evaluated (NE);
* an iUPD at the last visit: iRECIST needs a confirming scan 4–8 weeks later.
"""

from __future__ import annotations

import argparse
import io
import json
from html.parser import HTMLParser
from pathlib import Path

from test_twin_further_increase import _case, _run_twin

from DTTLib.pipeline.report_step import build_report
from DTTLib.pipeline.run import RunResult, _narrative
from DTTLib.pipeline.summary_screen import summary_lines
from DTTLib.response.cli import add_recist_parser


def _lesion(ld_mm: float) -> list[dict]:
    return [{"id": "L1", "organ": "liver", "nodal": False, "ld_mm": ld_mm}]


#: iRECIST, L1 unchanged at 20 mm: non-target PD at day 56 (iUPD); at day 112 the reader calls the
#: non-target disease non-CR/non-PD and still answers "yes" to further increase
IGNORED_CALL = {
    "immunotherapy": True,
    "timepoints": [
        {"day": 0, "lesions": _lesion(20.0), "non_target": "nonCR_nonPD"},
        {"day": 56, "lesions": _lesion(20.0), "non_target": "PD", "new_lesions": False},
        {"day": 112, "lesions": _lesion(20.0), "non_target": "nonCR_nonPD", "new_lesions": False,
         "non_target_further_increase": True},
    ],
}


def _recist(tmp_path: Path, case: dict, *flags: str) -> str:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    parser = argparse.ArgumentParser(prog="dtt")
    add_recist_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["recist", str(path), *flags])
    out, err = io.StringIO(), io.StringIO()
    assert args.handler(args, stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def _row(text: str, day: str) -> list[str]:
    """The table row of one day, split on the two-space column gaps."""
    line = next(line for line in text.splitlines() if line.split()[:1] == [day])
    return [cell.strip() for cell in line.split("  ") if cell.strip()]


def test_dtt_recist_text_shows_the_warning_and_the_further_increase_call(tmp_path):
    result = json.loads(_recist(tmp_path, IGNORED_CALL, "--json"))
    warnings = result["warnings"]
    ignored = [w for w in warnings if "day 112" in w and "not counted" in w]
    assert len(ignored) == 1, warnings
    # the JSON has the reader's call on every timepoint, as given in case.json
    assert [t["non_target_further_increase"] for t in result["timepoints"]] == [None, None, True]

    text = _recist(tmp_path, IGNORED_CALL)
    for warning in warnings:
        assert warning in text
    # the count sits with the best response, above the target list, not only at the end
    best = text.index("Best overall response")
    heading = text.index(f"{len(warnings)} iRECIST warning")
    assert best < heading < text.index(ignored[0]) < text.index("Target lesions:")
    header = next(line for line in text.splitlines() if line.startswith("Day"))
    assert "Further incr." in header
    # baseline: no call; day 56 PD without a call: not assessed; day 112: the reader's "yes"
    assert _row(text, "0")[6] == "-"
    assert _row(text, "56")[6] == "not assessed"
    assert _row(text, "112")[6] == "yes"


def test_dtt_recist_without_immunotherapy_has_no_further_increase_column(tmp_path):
    case = {**IGNORED_CALL, "immunotherapy": False,
            "timepoints": [{k: v for k, v in tp.items() if k != "non_target_further_increase"}
                           for tp in IGNORED_CALL["timepoints"]]}
    text = _recist(tmp_path, case)
    header = next(line for line in text.splitlines() if line.startswith("Day"))
    assert "Non-target" in header and "Further incr." not in header


class _Sections(HTMLParser):
    """Per <h2> section of the report: its highlighted notes (class 'flag') and all its text."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list[str]]] = {}
        self._current: dict[str, list[str]] | None = None
        self._tag = ""
        self._title: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self._title = []
        elif tag == "p" and self._current is not None:
            self._tag = "flag" if attrs.get("class") == "flag" else "p"
            self._current[self._tag].append("")

    def handle_endtag(self, tag):
        if tag == "h2" and self._title is not None:
            self._current = self.sections.setdefault("".join(self._title), {"flag": [], "p": [], "text": []})
            self._title = None
        elif tag == "p":
            self._tag = ""

    def handle_data(self, data):
        if self._title is not None:
            self._title.append(data)
        elif self._current is not None:
            self._current["text"].append(data)
            if self._tag:
                self._current[self._tag][-1] += data


def test_dtt_run_report_and_summary_show_every_warning(tmp_path):
    folder = _case(tmp_path, {})  # iRECIST; non-target PD at day 56 and day 112, no further-increase call
    case_json = json.loads((folder / "case.json").read_text())
    case_json["timepoints"][1]["non_target"] = "none"  # present at baseline, "none" at day 56
    (folder / "case.json").write_text(json.dumps(case_json))
    case, twin, _inputs = _run_twin(folder)
    warnings = twin.recist["warnings"]
    assert any("day 56" in w and "NE" in w for w in warnings), warnings
    assert any("iUPD at day 112" in w and "unconfirmed" in w for w in warnings), warnings

    labels = [t.timepoint_id for t in case.timepoints]
    narrative, _prompt = _narrative(twin, labels, {})
    png = tmp_path / "png"
    png.mkdir()
    page = build_report(twin, labels, {}, narrative, [], png, tmp_path / "report.html", "test")
    parser = _Sections()
    parser.feed(page.read_text(encoding="utf-8"))
    response = parser.sections["Response (iRECIST)"]
    # each warning is a highlighted note of the response section, and the paragraph with the best
    # response says how many there are
    assert sorted(response["flag"]) == sorted(warnings)
    assert f"{len(warnings)} iRECIST warnings" in response["p"][0]
    assert "Best overall response" in response["p"][0]
    text = " ".join(response["text"])
    assert "further increase" in text and "not assessed" in text  # day 112: PD, no call

    result = RunResult(tmp_path, case, twin, narrative)
    lines = summary_lines(result, 1.0)
    heading = next(i for i, line in enumerate(lines) if f"{len(warnings)} iRECIST warnings" in line)
    for warning in warnings:
        assert any(warning in line for line in lines[heading + 1:heading + 1 + len(warnings)]), warning
