"""The digital twin: measurements + identities + therapy → RECIST → growth fits → what-if.

Typical use::

    from DTTLib.twin import TwinInputs, TimepointInfo, LesionMeasurement, build_twin
    state, whatif = build_twin(TwinInputs("P1", [TimepointInfo(0), TimepointInfo(56)], measurements))
    state.recist["timepoints"][-1]["overall"], state.to_json()
"""

from DTTLib.twin.assemble import DEFAULT_MODELS, SOD_SERIES, build_twin, recist_case
from DTTLib.twin.records import (
    Curve,
    LesionMeasurement,
    SeriesGrowth,
    TherapyEntry,
    TimepointInfo,
    TwinInputs,
    TwinState,
)
from DTTLib.twin.whatif import TwinWhatIf, WhatIfControls

__all__ = ["DEFAULT_MODELS", "SOD_SERIES", "Curve", "LesionMeasurement", "SeriesGrowth", "TherapyEntry",
           "TimepointInfo", "TwinInputs", "TwinState", "TwinWhatIf", "WhatIfControls", "build_twin", "recist_case"]
