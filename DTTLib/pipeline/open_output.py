"""Open a finished ``dtt run`` output folder: its scene, its twin, and a live what-if engine.

What the DigitalTwinTumor module does with "Open run output": the scene bundle is read into
the current scene (volumes, segments, RECIST lines, tables, charts, narrative, hierarchy),
the twin comes back from ``twin.json`` and the what-if engine is rebuilt from the saved SOD
series (see :func:`DTTLib.twin.assemble.whatif_from_state`), so the sliders work as after a
fresh run. Nothing in the folder is changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError

#: The twin.json schema ``dtt run`` writes, and those this reader understands (docs/TWIN_JSON.md).
TWIN_SCHEMA = "dtt-twin/1"
READABLE_SCHEMAS = (TWIN_SCHEMA,)


@dataclass
class OpenedRun:
    out_dir: Path
    state: Any  # TwinState
    whatif: Any  # TwinWhatIf | None
    report: Path | None  # report.html when present
    narrative: str
    notes: list[str] = field(default_factory=list)


def read_run_summary(out_dir: str | Path) -> dict[str, Any]:
    """``twin.json`` of a run folder, checked; every problem is named with its fix."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise InputError(f"run output folder '{folder}' does not exist", "choose the OUT_DIR that dtt run wrote")
    path = folder / "twin.json"
    if not path.is_file():
        raise InputError(f"'{folder}' has no twin.json, so it is not a dtt run output",
                         "choose the OUT_DIR that dtt run wrote (it holds twin.json and scene.mrb)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"twin.json in '{folder}' cannot be read ({error})",
                         "re-run dtt run to write it again") from None
    schema = summary.get("schema") if isinstance(summary, dict) else None
    if schema not in READABLE_SCHEMAS:
        raise InputError(f"twin.json in '{folder}' has schema {schema!r}, not one of {READABLE_SCHEMAS}",
                         "re-run the case with this version of dtt run")
    if not isinstance(summary.get("twin"), dict):
        raise InputError(f"twin.json in '{folder}' holds no twin", "re-run dtt run on the case")
    return summary


def open_run_output(out_dir: str | Path, scene: Any = None, load_scene: bool = True,
                    clear_scene: bool = False) -> OpenedRun:
    """Load a run folder's scene bundle into ``scene`` and rebuild its twin and what-if engine."""
    from DTTLib.twin.assemble import whatif_from_state  # noqa: PLC0415
    from DTTLib.twin.records import TwinState  # noqa: PLC0415

    folder = Path(out_dir)
    summary = read_run_summary(folder)
    bundle = folder / "scene.mrb"
    if load_scene:
        if not bundle.is_file():
            raise InputError(f"'{folder}' has no scene.mrb (the run did not finish)", "re-run dtt run on the case")
        from DTTLib.mrml.storage import load_scene_mrb  # noqa: PLC0415

        load_scene_mrb(bundle, clear=clear_scene, scene=scene)
    state = TwinState.from_dict(summary["twin"])
    notes = [str(n) for n in summary.get("notes", [])]
    engine = whatif_from_state(state)
    if engine is None:
        notes.append("what-if is unavailable for this run: its SOD has no usable growth fit")
    narrative = summary.get("narrative") or {}
    report = folder / "report.html"
    return OpenedRun(folder, state, engine, report if report.is_file() else None,
                     str(narrative.get("text", "")) if isinstance(narrative, dict) else "", notes)
