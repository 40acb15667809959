"""Overall response at one timepoint (RECIST 1.1 §4.4.1, Tables 1 and 2).

Table 1 applies when the patient has target lesions (with or without non-target disease),
Table 2 when there were no target lesions at baseline (non-target disease only). New
lesions or unequivocal non-target progression are PD whatever the targets do.
"""

from __future__ import annotations

NON_CR_NON_PD = "nonCR_nonPD"


def overall_response(target: str | None, non_target: str, new_lesions: bool) -> str:
    """Combine target response, non-target status and new lesions.

    ``target`` is None when there are no target lesions (Table 2). ``non_target`` is one of
    ``none`` (no non-target disease at baseline), ``CR``, ``nonCR_nonPD``, ``PD``, ``NE``.

    Table 1 (targets): CR+CR/none+no → CR; CR+nonCR_nonPD → PR; CR+not evaluated → PR;
    PR+non-PD or not all evaluated → PR; SD+non-PD or not all evaluated → SD;
    not all evaluated (NE)+non-PD → NE; PD+any → PD; any+PD → PD; any+new → PD.
    Table 2 (no targets): CR+no → CR; nonCR_nonPD+no → nonCR_nonPD (preferred to "SD");
    not all evaluated+no → NE; PD → PD; new → PD.
    """
    if new_lesions or non_target == "PD" or target == "PD":
        return "PD"
    if target is None:
        return {"CR": "CR", NON_CR_NON_PD: NON_CR_NON_PD, "NE": "NE", "none": "NE"}[non_target]
    if target == "CR":
        return "CR" if non_target in ("CR", "none") else "PR"
    if target in ("PR", "SD", "NE"):
        return target
    raise ValueError(f"unknown target response {target!r}")
