"""Case folders for the demo: the real brain MR pair and the synthetic phantom.

The brain case gets one box per scan the way a reader draws it: around the lesion on its
widest slice. The boxes are taken from the expert labels' extent on that slice (the labels
themselves are not given to the pipeline), so the segmentation is still the model's work.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from DTTLib.errors import InputError

#: The interval between the two brain scans is not part of the public data: assumed, and said so.
BRAIN_ASSUMED_INTERVAL_DAYS = 90.0


def default_data_dir() -> Path:
    """$DTT_DEMO_DATA, else ``../shared/data/imaging`` beside the source checkout."""
    if os.environ.get("DTT_DEMO_DATA"):
        return Path(os.environ["DTT_DEMO_DATA"])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imaging"


def brain_pair_case(data_dir: Path, case_dir: Path) -> Path:
    from DTTLib.imaging.io import read_image  # noqa: PLC0415

    data_dir, case_dir = Path(data_dir), Path(case_dir)
    missing = [name for name in ("brain1_image.nrrd", "brain1_label.nrrd", "brain2_image.nrrd", "brain2_label.nrrd")
               if not (data_dir / name).exists()]
    if missing:
        raise InputError(f"demo data not found in '{data_dir}' (missing {', '.join(missing)})",
                         "pass --data pointing at shared/data/imaging or set DTT_DEMO_DATA")
    case_dir.mkdir(parents=True, exist_ok=True)
    timepoints, boxes = [], []
    for index, name in enumerate(("brain1", "brain2")):
        shutil.copy(data_dir / f"{name}_image.nrrd", case_dir / f"{name}.nrrd")
        label = read_image(data_dir / f"{name}_label.nrrd").array > 0
        k = int(np.argmax(label.sum(axis=(1, 2))))
        j, i = np.nonzero(label[k])
        boxes.append({"timepoint": f"t{index}", "ijk": [int(i.min()), int(j.min()), k, int(i.max()), int(j.max()), k]})
        timepoints.append({"id": f"t{index}", "path": f"{name}.nrrd", "day": index * BRAIN_ASSUMED_INTERVAL_DAYS})
    case = {
        "patient": "MRBRAIN-DEMO",
        "modality": "MR",
        "description": ("Two MR scans of one patient with a brain tumour (pyradiomics test data, BSD-3). "
                        f"The interval between the scans is unknown; {BRAIN_ASSUMED_INTERVAL_DAYS:g} days is "
                        "assumed for the demo. RECIST is shown for illustration (brain tumours use RANO)."),
        "timepoints": timepoints,
        "therapy": [],
        "lesions": [{"id": "T1", "organ": "brain", "nodal": False, "box": boxes[0], "boxes": [boxes[1]]}],
    }
    (case_dir / "case.json").write_text(json.dumps(case, indent=2))
    return case_dir
