"""Find and check an nnU-Net v2 model folder before anything heavy is imported.

A trained nnU-Net model is a folder (``<Trainer>__<Plans>__<configuration>``) holding
``dataset.json``, ``plans.json`` and ``fold_N/checkpoint_final.pth`` for one or more folds.
``nnunet:<name or folder>`` names one: a folder path, or a catalog id (``nnunet-msd-liver``,
…) whose folder the user has placed in the model cache or set in the model store's settings.
There are no nnU-Net v2 weights for the Decathlon tasks to download (MIC-DKFZ/nnUNet#2665:
v1 weights do not load in v2), so catalog entries of this kind are ``folder:`` sources.

Which labels are lesions: labels whose names say tumour/cancer/lesion/metastasis/nodule;
when none does, every foreground label (a model trained on lesions only, e.g. MSD lung).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError, MissingDependencyError

PREFIX = "nnunet:"
CHECKPOINT = "checkpoint_final.pth"
LESION_WORDS = re.compile(r"tumou?r|cancer|lesion|metasta|nodule|neoplasm|mass", re.IGNORECASE)
SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient")


@dataclass(frozen=True)
class NnUNetModelFolder:
    """What a model folder promises, read from its JSON files (no torch needed)."""

    path: Path
    model_id: str
    folds: tuple[str, ...]             # "0", "1", …, or "all"
    checkpoint_name: str
    labels: dict[str, int]             # name → value, background included
    lesion_labels: tuple[int, ...]
    channel_names: dict[str, str]      # "0" → "CT"
    configurations: tuple[str, ...]
    image_reader_writer: str
    description: str = ""

    @property
    def modality(self) -> str:
        return ", ".join(self.channel_names.values())


def strip_prefix(spec: str) -> str:
    return spec[len(PREFIX):] if spec.lower().startswith(PREFIX) else spec


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"'{folder}' is not a complete nnU-Net model folder: {path.name} is missing",
                         "point at the trained model folder itself (it holds dataset.json, plans.json "
                         "and fold_N/checkpoint_final.pth), e.g. …/nnUNetTrainer__nnUNetPlans__3d_fullres")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}", "copy the model folder again") from None


def _descend(folder: Path) -> Path:
    """A parent holding exactly one ``<Trainer>__<Plans>__<config>`` model folder → that folder."""
    if (folder / "plans.json").is_file() or (folder / "dataset.json").is_file():
        return folder
    candidates = [p for p in sorted(folder.glob("*__*__*")) if (p / "plans.json").is_file()]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise InputError(f"'{folder}' holds several nnU-Net models ({names})", "give one of them")
    return folder


def _lesion_labels(labels: dict[str, Any]) -> tuple[int, ...]:
    values = {name: value for name, value in labels.items() if name != "ignore"}
    foreground = {name: value for name, value in values.items() if value != 0}
    if any(isinstance(v, (list, tuple)) for v in foreground.values()):
        raise InputError("this nnU-Net model predicts overlapping regions, not labels",
                         "region-based models are not supported yet; use a label-based model")
    named = tuple(int(v) for name, v in foreground.items() if LESION_WORDS.search(name))
    return named or tuple(int(v) for v in foreground.values())


def inspect_model_folder(folder: str | Path, folds: tuple[str, ...] | None = None,
                         checkpoint_name: str = CHECKPOINT, model_id: str | None = None) -> NnUNetModelFolder:
    """Check ``folder`` holds a usable model; one clear error naming what is missing otherwise."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputError(f"nnU-Net model folder '{path}' does not exist",
                         "give the folder that holds dataset.json, plans.json and fold_N/checkpoint_final.pth")
    path = _descend(path.resolve())
    dataset = _read_json(path / "dataset.json", path)
    plans = _read_json(path / "plans.json", path)
    labels = dataset.get("labels")
    channels = dataset.get("channel_names") or dataset.get("modality")
    if not isinstance(labels, dict) or not isinstance(channels, dict):
        raise InputError(f"{path / 'dataset.json'} lacks 'labels' or 'channel_names'",
                         "this looks like an nnU-Net v1 model; v2 (nnunetv2) folders are needed")
    if "configurations" not in plans:
        raise InputError(f"{path / 'plans.json'} has no 'configurations'",
                         "this looks like an nnU-Net v1 plans file; v2 (nnunetv2) folders are needed")
    available = tuple(sorted(p.name.removeprefix("fold_") for p in path.glob("fold_*")
                             if (p / checkpoint_name).is_file()))
    if folds is None:
        chosen = tuple(f for f in available if f != "all") or available
    else:
        chosen = tuple(str(f) for f in folds)
        missing = [f for f in chosen if f not in available]
        if missing:
            raise InputError(f"fold(s) {', '.join(missing)} of '{path}' have no {checkpoint_name}",
                             f"available folds: {', '.join(available) or 'none'}")
    if not chosen:
        partial = sorted(p.relative_to(path).as_posix() for p in path.glob("fold_*/checkpoint_*.pth"))
        hint = (f" (found {', '.join(partial)}: training did not finish; pass checkpoint_name to use one)"
                if partial else "")
        raise InputError(f"'{path}' has no fold_N/{checkpoint_name}{hint}",
                         "copy the fold folders of the trained model next to dataset.json and plans.json")
    reader = str(plans.get("image_reader_writer", "SimpleITKIO"))
    if reader not in SUPPORTED_READERS:
        raise InputError(f"the model was trained with image reader '{reader}'",
                         f"only models trained on 3-D volumes ({', '.join(SUPPORTED_READERS)}) can run here")
    return NnUNetModelFolder(
        path=path, model_id=model_id or path.name, folds=chosen, checkpoint_name=checkpoint_name,
        labels={str(k): v for k, v in labels.items()}, lesion_labels=_lesion_labels(labels),
        channel_names={str(k): str(v) for k, v in channels.items()},
        configurations=tuple(plans["configurations"]), image_reader_writer=reader,
        description=str(dataset.get("description", dataset.get("name", ""))))


def nnunet_catalog_ids() -> list[str]:
    from DTTLib.models.catalog import load_catalog  # noqa: PLC0415

    return sorted(i for i, e in load_catalog().items() if e.architecture.lower().startswith("nnu-net"))


def resolve_model(spec: str, store: Any = None) -> NnUNetModelFolder:
    """``nnunet:<folder or catalog id>`` → a checked model folder; never downloads."""
    name = strip_prefix(spec).strip()
    if not name:
        raise InputError("no nnU-Net model given", "use nnunet:<folder> or nnunet:<catalog id>")
    as_path = Path(name).expanduser()
    if as_path.exists() or "/" in name or "\\" in name or name.startswith("."):
        return inspect_model_folder(as_path)
    known = nnunet_catalog_ids()
    if name not in known:
        raise InputError(f"unknown nnU-Net model '{name}'",
                         f"give a model folder or one of: {', '.join(known) or '(none in the catalog)'}")
    from DTTLib.models.cache import ModelStore  # noqa: PLC0415
    from DTTLib.models.catalog import get_entry  # noqa: PLC0415

    store = store or ModelStore()
    entry = get_entry(name)
    for folder in (store.local_folder(name), store.cache_path(name)):
        if folder is not None and Path(folder).is_dir():
            found = inspect_model_folder(folder, model_id=name)
            wanted = tuple(int(v) for v in entry.input.get("lesion_labels", ()))
            return replace(found, lesion_labels=wanted) if wanted else found
    raise MissingDependencyError(
        f"nnU-Net model '{name}' ({entry.input.get('segments', entry.architecture)}) is not on this computer "
        "and has no download (no nnU-Net v2 weights are published for it)",
        f"train it with nnU-Net on its dataset or obtain a trained v2 folder, then pass "
        f"--model nnunet:/path/to/folder or copy the folder to {store.cache_path(name)}")


__all__ = ["CHECKPOINT", "PREFIX", "NnUNetModelFolder", "inspect_model_folder", "nnunet_catalog_ids",
           "resolve_model", "strip_prefix"]
