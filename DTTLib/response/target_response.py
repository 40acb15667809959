"""Response of the target lesions at one follow-up (RECIST 1.1 §4.3.1, §4.3.2, §4.4.2).

Order of the checks, and why:

1. Reappearance after CR → PD. Once all targets had gone (nadir 0 for non-nodal disease),
   any reappearing non-nodal target is progression (Schwartz et al. 2016, RECIST 1.1
   update, "lesions that disappear and reappear"); the +5 mm rule cannot apply to a 0 nadir.
2. CR: every non-nodal target 0 mm and every nodal target SA < 10 mm. The SOD may be
   > 0 at CR because normal-sized nodes keep their short axis (§4.3.2). Nodes < 10 mm are
   normal by definition, so their sum cannot constitute progression.
3. PD before PR: SOD ≥ 1.20 × nadir and SOD ≥ nadir + 5 mm, nadir = smallest SOD so far
   including baseline (§4.3.1). A shrunken-then-regrown sum can satisfy both PR and PD; PD
   must win.
4. PR: SOD ≤ 0.70 × baseline SOD (§4.3.1).
5. SD otherwise.

If any target is not evaluable the response is NE, unless the evaluable targets alone
already meet PD (§4.4.2: "...if ... those gave a sum of 80 mm, the patient will have
achieved PD status, regardless of the missing lesion").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from DTTLib.response.rules import RULES, RecistRules, is_at_least, is_at_most
from DTTLib.response.sod import SumOfDiameters

CR, PR, SD, PD, NE = "CR", "PR", "SD", "PD", "NE"


@dataclass(frozen=True)
class TargetAssessment:
    response: str
    reason: str


def meets_pd(total_mm: float, nadir_mm: float, rules: RecistRules = RULES) -> bool:
    """PD by sum: ≥ 20 % over the nadir and ≥ 5 mm over the nadir (§4.3.1)."""
    return (is_at_least(total_mm, rules.pd_min_fraction_of_nadir * nadir_mm, rules)
            and is_at_least(total_mm - nadir_mm, rules.pd_min_absolute_increase_mm, rules))


def pd_threshold_mm(nadir_mm: float, rules: RecistRules = RULES) -> float:
    """Smallest SOD that is PD against this nadir: ≥ 1.2 × nadir and ≥ nadir + 5 mm (§4.3.1)."""
    return max(rules.pd_min_fraction_of_nadir * nadir_mm, nadir_mm + rules.pd_min_absolute_increase_mm)


def pd_threshold_curve(days: Sequence[float], sod_mm: Sequence[float | None],
                       rules: RecistRules = RULES) -> tuple[list[float], list[float]]:
    """The PD threshold over time, as a step curve through the measured visits.

    A visit is judged against the nadir of the visits before it (baseline included), not the
    smallest SOD on study, so the threshold steps down after each new nadir. Between two
    measured visits ``d[i-1]`` and ``d[i]`` (not-evaluable visits, ``None``, skipped: they change
    no nadir) the curve is ``pd_threshold_mm(min(SOD up to d[i-1]))``: it reaches ``d[i]`` at the
    threshold that visit is judged against. Returns the points ``(x, y)``, two per interval;
    empty with fewer than two measured visits.
    """
    pts = [(float(d), float(v)) for d, v in zip(days, sod_mm) if v is not None and v == v]
    xs: list[float] = []
    ys: list[float] = []
    nadir = None
    for (d_prev, v_prev), (d, _) in zip(pts, pts[1:]):
        nadir = v_prev if nadir is None else min(nadir, v_prev)
        thr = pd_threshold_mm(nadir, rules)
        xs += [d_prev, d]
        ys += [thr, thr]
    return xs, ys


def meets_pr(total_mm: float, baseline_mm: float, rules: RecistRules = RULES) -> bool:
    """PR by sum: ≤ 70 % of the baseline sum, i.e. a decrease of at least 30 % (§4.3.1)."""
    return is_at_most(total_mm, rules.pr_max_fraction_of_baseline * baseline_mm, rules)


def _reappeared(values: Mapping[str, float | None], nodal: Mapping[str, bool]) -> list[str]:
    return [i for i, v in values.items() if not nodal[i] and v is not None and v > 0]


def assess_targets(sod: SumOfDiameters, nodal: Mapping[str, bool], baseline_sod_mm: float,
                   nadir_mm: float, in_cr: bool, rules: RecistRules = RULES) -> TargetAssessment:
    """Target response at a follow-up.

    ``nadir_mm``: smallest complete SOD before this timepoint (baseline included).
    ``in_cr``: the last evaluable target response was CR (for the reappearance rule).
    """
    values = sod.values
    total = sod.evaluable_sum_mm
    if in_cr:
        back = _reappeared(values, nodal)
        if back:
            return TargetAssessment(PD, f"target {', '.join(back)} reappeared after CR")
    if not sod.complete:
        if meets_pd(total, nadir_mm, rules):
            return TargetAssessment(
                PD, f"evaluable targets alone sum to {total:g} mm ≥ 1.2 × nadir {nadir_mm:g} mm "
                    f"and +5 mm; missing {', '.join(sod.not_evaluable_ids)} cannot undo PD (§4.4.2)")
        return TargetAssessment(NE, f"target(s) {', '.join(sod.not_evaluable_ids)} not evaluable")
    nodes_normal = all(v < rules.node_pathological_min_sa_mm for i, v in values.items()
                       if nodal[i] and v is not None)
    non_nodal_gone = all(v == 0 for i, v in values.items() if not nodal[i] and v is not None)
    if nodes_normal and non_nodal_gone:
        return TargetAssessment(CR, "all non-nodal targets gone, all target nodes SA < 10 mm")
    if meets_pd(total, nadir_mm, rules):
        return TargetAssessment(PD, f"SOD {total:g} mm ≥ 1.2 × nadir {nadir_mm:g} mm and ≥ nadir + 5 mm")
    if meets_pr(total, baseline_sod_mm, rules):
        return TargetAssessment(PR, f"SOD {total:g} mm ≤ 0.7 × baseline {baseline_sod_mm:g} mm")
    return TargetAssessment(SD, "neither PR nor PD")
