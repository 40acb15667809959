"""The narrative's facts are copied from the twin, and the template narrative grounds in them."""

from __future__ import annotations

from test_twin_assembly import five_timepoints

from DTTLib.narrative.facts import facts_from_dict, fact_numbers
from DTTLib.narrative.service import narrate
from DTTLib.pipeline.summary import twin_summary
from DTTLib.twin import build_twin


def test_summary_numbers_come_from_the_twin_and_ground_the_narrative():
    inputs, _days = five_timepoints()
    state, _engine = build_twin(inputs)
    labels = [f"t{i}" for i in range(len(state.timepoints))]
    summary = twin_summary(state, labels)
    facts = facts_from_dict(summary)
    # every measurement row of the twin appears, rounded to 0.1 mm
    assert len(summary["measurements"]) == len(state.lesion_table)
    for row, fact in zip(state.lesion_table, summary["measurements"]):
        assert fact["ld_mm"] == round(row["ld_mm"], 1) and fact["timepoint"] == labels[row["timepoint"]]
    # the response rows are the RECIST engine's, and the best response is carried over
    for tp, fact in zip(state.recist["timepoints"], summary["response"]):
        assert fact["sum_mm"] == round(tp["sod_mm"], 1)
    assert summary["best_response"] == state.recist["best_overall_response"]
    # what-if differences compare scenario with scenario ('therapy as given'), never with the
    # blended fit: the numbers must equal the curves' own end values
    reference = next(c for c in state.whatif if "as given" in c.name)
    for row in summary["whatif"]:
        curve = next(c for c in state.whatif if c.name == row["scenario"])
        assert row["difference_mm"] == round(curve.median[-1] - reference.median[-1], 1)
    result = narrate(facts)
    assert result.backend == "template"
    assert result.grounding["ungrounded"] == [] and result.grounding["numbers_checked"] > 20
    assert round(state.recist["timepoints"][-1]["sod_mm"], 1) in fact_numbers(facts)
