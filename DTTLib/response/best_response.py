"""Best overall response over all timepoints (RECIST 1.1 §4.4.3 Table 3, §4.6; iRECIST).

Rules implemented, with the guideline's reasons:

* Only assessments up to and including the first PD count (§4.4.3: best response "from
  the start of the treatment until disease progression"); for iRECIST up to the first
  iCPD, since iUPD does not end the assessment (Seymour 2017, "iBOR").
* Without confirmation the best single CR or PR is the BOR.
* With confirmation (§4.6.1) a CR needs a later CR ≥ 28 days after it, a PR a later CR or PR
  ≥ 28 days after it; assessments in between must be no worse (CR for CR; CR/PR for PR),
  NE in between is tolerated. A CR followed by a PR does not confirm a PR: per Table 3
  footnote (a) disease after a true CR is progression, so it falls to SD/PD.
* SD — and an unconfirmed CR/PR, which Table 3 turns into "SD provided minimum criteria
  for SD duration met" — counts only when observed at an assessment at least
  ``min_sd_days`` after baseline (§4.6.3). Otherwise the BOR is PD if progression followed
  ("otherwise PD"), else NE ("otherwise NE"); for iRECIST iCPD, else iUPD, else NE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from DTTLib.response.rules import RULES, RecistRules

#: Maps every timepoint category to its level in the best-response ranking.
LEVEL = {
    "CR": "CR", "iCR": "CR",
    "PR": "PR", "iPR": "PR",
    "SD": "SD", "iSD": "SD", "nonCR_nonPD": "SD", "non-iCR/non-iUPD": "SD",
    "PD": "PD", "iCPD": "PD",
    "iUPD": "UPD",
    "NE": "NE",
}


@dataclass(frozen=True)
class Assessment:
    day: float
    overall: str


@dataclass(frozen=True)
class BestResponse:
    """The BOR, the day of the assessment it rests on, whether confirmed, and why."""

    category: str
    day: float | None
    confirmed: bool | None
    reason: str


def _names(irecist: bool, has_targets: bool) -> dict[str, str]:
    if irecist:
        sd = "iSD" if has_targets else "non-iCR/non-iUPD"
        return {"CR": "iCR", "PR": "iPR", "SD": sd, "PD": "iCPD", "UPD": "iUPD", "NE": "NE"}
    sd = "SD" if has_targets else "nonCR_nonPD"
    return {"CR": "CR", "PR": "PR", "SD": sd, "PD": "PD", "UPD": "PD", "NE": "NE"}


def _confirmed_by(window: Sequence[Assessment], i: int, rules: RecistRules) -> int | None:
    """Index of the assessment confirming window[i] (a CR or PR), or None."""
    level = LEVEL[window[i].overall]
    accept = {"CR"} if level == "CR" else {"CR", "PR"}
    for j in range(i + 1, len(window)):
        lj = LEVEL[window[j].overall]
        if lj == "NE":
            continue
        if lj not in accept:
            return None
        if window[j].day - window[i].day >= rules.confirmation_min_days:
            return j
    return None


def best_overall_response(assessments: Sequence[Assessment], baseline_day: float, *,
                          confirmation_required: bool, min_sd_days: float,
                          has_targets: bool = True, irecist: bool = False,
                          rules: RecistRules = RULES) -> BestResponse:
    """Best overall response from the follow-up assessments (baseline excluded)."""
    names = _names(irecist, has_targets)
    window: list[Assessment] = []
    for a in assessments:
        window.append(a)
        if LEVEL[a.overall] == "PD":
            break
    for level in ("CR", "PR"):
        for i, a in enumerate(window):
            if LEVEL[a.overall] != level:
                continue
            if not confirmation_required:
                return BestResponse(names[level], a.day, None,
                                    f"{a.overall} at day {a.day:g} (confirmation not required)")
            j = _confirmed_by(window, i, rules)
            if j is not None:
                return BestResponse(
                    names[level], a.day, True,
                    f"{a.overall} at day {a.day:g} confirmed at day {window[j].day:g} "
                    f"(≥ {rules.confirmation_min_days:g} days later, §4.6.1)")
    for a in window:
        if LEVEL[a.overall] in ("CR", "PR", "SD") and a.day - baseline_day >= min_sd_days:
            note = "" if LEVEL[a.overall] == "SD" else f" (unconfirmed {a.overall} counts as SD)"
            return BestResponse(names["SD"], a.day, None,
                                f"{a.overall} at day {a.day:g}, ≥ {min_sd_days:g} days after "
                                f"baseline (SD minimum duration){note}")
    short = any(LEVEL[a.overall] in ("CR", "PR", "SD") for a in window)
    why = (f"; non-PD response seen only before the SD minimum of {min_sd_days:g} days"
           if short else "")
    for level in ("PD", "UPD"):
        hit = next((a for a in window if LEVEL[a.overall] == level), None)
        if hit is not None and not (level == "UPD" and not irecist):
            return BestResponse(names[level], hit.day, None,
                                f"{hit.overall} at day {hit.day:g}{why}")
    return BestResponse("NE", None, None, "no evaluable response" + why)
