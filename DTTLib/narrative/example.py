"""A synthetic twin summary (two lesions, three timepoints, one low-confidence measurement):
used by the module self-test, the docs and the tests."""

from __future__ import annotations

from typing import Any


def example_twin() -> dict[str, Any]:
    return {
        "patient_id": "SYNTH-001",
        "criteria": "RECIST 1.1",
        "measurements": [
            {"lesion_id": "L1", "timepoint": "t0", "day": 0, "ld_mm": 32.4, "sa_mm": 21.0,
             "volume_ml": 11.83, "confidence": 0.91, "source": "medsam"},
            {"lesion_id": "L1", "timepoint": "t1", "day": 56, "ld_mm": 24.1, "sa_mm": 15.2,
             "volume_ml": 5.21, "confidence": 0.88, "source": "medsam"},
            {"lesion_id": "L1", "timepoint": "t2", "day": 112, "ld_mm": 21.7, "sa_mm": 13.9,
             "volume_ml": 3.96, "confidence": 0.86, "source": "medsam"},
            {"lesion_id": "L2", "timepoint": "t0", "day": 0, "ld_mm": 18.2, "confidence": 0.74,
             "source": "medsam"},
            {"lesion_id": "L2", "timepoint": "t1", "day": 56, "ld_mm": 15.9, "confidence": 0.41,
             "source": "threshold"},
            {"lesion_id": "L2", "timepoint": "t2", "day": 112, "ld_mm": 14.8, "confidence": 0.79,
             "source": "medsam"},
        ],
        "response": [
            {"timepoint": "t0", "day": 0, "sum_mm": 50.6, "response": "baseline"},
            {"timepoint": "t1", "day": 56, "sum_mm": 40.0, "change_from_baseline_pct": -20.95,
             "change_from_nadir_pct": -20.95, "response": "SD"},
            {"timepoint": "t2", "day": 112, "sum_mm": 36.5, "change_from_baseline_pct": -27.87,
             "change_from_nadir_pct": -8.75, "response": "SD"},
        ],
        "best_response": "SD",
        "growth": {"model": "exponential decay with resistance",
                   "parameters": [{"name": "kill rate", "value": 0.0123, "low": 0.0081, "high": 0.0167,
                                   "unit": "1/day"}],
                   "forecast_day": 168, "forecast_mm": 34.2, "forecast_low_mm": 29.8,
                   "forecast_high_mm": 39.1},
        "whatif": [{"scenario": "therapy holiday", "description": "pause from day 112 for 28 days",
                    "day": 168, "difference_mm": 3.4, "difference_pct": 9.9}],
        "therapy": [{"name": "systemic therapy", "start_day": 3}],
        "clinical_notes": "Patient tolerating therapy. Lesion L1 in segment VII.",
    }
