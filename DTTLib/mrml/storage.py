"""Save and load nodes (.nrrd, .nii.gz, .seg.nrrd, .tsv, .mrk.json) and scenes (.mrb).

Slicer's IO manager is absent headless, so we drive the storage nodes directly — the same
ones Slicer uses, so files are what Slicer writes and reads. Writes go to a temporary file
that replaces the target only when complete: a failed save never destroys a good file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError, ResourceError
from DTTLib.mrml.runtime import get_runtime, get_scene, import_slicer

VOLUME_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
SEGMENTATION_EXTENSIONS = (".seg.nrrd", ".seg.nhdr")
TABLE_EXTENSIONS = (".tsv", ".csv")
MARKUPS_EXTENSIONS = (".mrk.json",)


def extension_of(path: str | os.PathLike[str]) -> str:
    name = Path(path).name.lower()
    for extension in (SEGMENTATION_EXTENSIONS + MARKUPS_EXTENSIONS + (".nii.gz",)
                      + VOLUME_EXTENSIONS + TABLE_EXTENSIONS + (".mrb", ".txt")):
        if name.endswith(extension):
            return extension
    return Path(name).suffix


def save_node(node: Any, path: str | os.PathLike[str]) -> Path:
    """Write one node to ``path`` with the storage node Slicer would use for that extension."""
    path = Path(path).absolute()
    _check_extension_fits(node, path)
    _check_writable(path)
    if node.GetStorageNode() is None:
        node.AddDefaultStorageNode()
    storage = node.GetStorageNode()
    if storage is None:
        raise InputError(f"node '{node.GetName()}' ({node.GetClassName()}) cannot be saved to a file",
                         "save the whole scene as .mrb instead")
    if node.IsA("vtkMRMLVolumeNode"):
        storage.SetUseCompression(True)
    with _partial_file(path) as partial:
        storage.SetFileName(str(partial))
        ok = storage.WriteData(node)
        storage.SetFileName(str(path))
        if not ok or not partial.exists():
            raise ResourceError(f"could not write '{path}': {_messages(storage)}",
                                "check free disk space and write permission for that folder")
        for sidecar in partial.parent.iterdir():  # e.g. a table's .schema.tsv
            os.replace(sidecar, path.parent / sidecar.name)
    return path


def load_volume(path: str | os.PathLike[str], name: str | None = None, labelmap: bool = False,
                scene: Any = None) -> Any:
    """Read a volume file into a new scalar (or labelmap) volume node."""
    slicer = import_slicer()
    path = _existing(path, VOLUME_EXTENSIONS)
    scene = scene or get_scene()
    class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(class_name, name or _stem(path))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node) or node.GetImageData() is None:
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"could not read volume '{path}': {_messages(storage)}",
                         "check that the file is a complete 3-D NRRD/NIfTI/MetaImage file")
    node.CreateDefaultDisplayNodes()
    return node


def load_segmentation(path: str | os.PathLike[str], name: str | None = None, scene: Any = None) -> Any:
    slicer = import_slicer()
    path = _existing(path, SEGMENTATION_EXTENSIONS + (".nrrd", ".nii.gz", ".nii"))
    scene = scene or get_scene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or _stem(path))
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"could not read segmentation '{path}': {_messages(storage)}",
                         "check that the file is a Slicer .seg.nrrd or a labelmap")
    node.CreateDefaultDisplayNodes()
    return node


def load_table(path: str | os.PathLike[str], name: str | None = None, scene: Any = None) -> Any:
    slicer = import_slicer()
    path = _existing(path, TABLE_EXTENSIONS)
    scene = scene or get_scene()
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name or _stem(path))
    storage = slicer.vtkMRMLTableStorageNode()
    storage.SetFileName(str(path))
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        raise InputError(f"could not read table '{path}': {_messages(storage)}",
                         "check that it is a tab- or comma-separated table")
    return node


def load_markups(path: str | os.PathLike[str], scene: Any = None) -> list[Any]:
    """Read a .mrk.json file; returns the markups nodes it holds."""
    path = _existing(path, MARKUPS_EXTENSIONS)
    logic = get_runtime().logic("Markups")
    node_id = logic.LoadMarkups(str(path))
    node = (scene or get_scene()).GetNodeByID(node_id) if node_id else None
    if node is None:
        raise InputError(f"could not read markups '{path}'", "check that it is a Slicer .mrk.json file")
    return [node]


def save_scene_mrb(path: str | os.PathLike[str], scene: Any = None) -> Path:
    """Write the whole scene as a Slicer scene bundle, replacing ``path`` only on success."""
    path = Path(path).absolute()  # the bundle writer refuses relative folders
    if extension_of(path) != ".mrb":
        raise InputError(f"scene bundle name '{path.name}' does not end in .mrb",
                         "use a file name like scene.mrb")
    _check_writable(path)
    scene = scene or get_scene()
    messages = _message_collection()
    with _partial_file(path) as partial:
        if not scene.WriteToMRB(str(partial), None, messages) or not partial.exists():
            raise ResourceError(f"could not write scene bundle '{path}': {_text(messages)}",
                                "check free disk space and write permission for that folder")
        os.replace(partial, path)
    return path


def load_scene_mrb(path: str | os.PathLike[str], clear: bool = True, scene: Any = None) -> Any:
    """Read a scene bundle into the scene (cleared first unless ``clear`` is False)."""
    path = _existing(Path(path).absolute(), (".mrb",))
    runtime = get_runtime()
    runtime.ensure_remote_io()
    scene = scene or runtime.scene
    messages = _message_collection()
    if not scene.ReadFromMRB(str(path), clear, messages):
        raise InputError(f"could not read scene bundle '{path}': {_text(messages)}",
                         "check that the file is a complete .mrb written by 3D Slicer")
    return scene


# -- helpers --------------------------------------------------------------------------
@contextlib.contextmanager
def _partial_file(path: Path) -> Iterator[Path]:
    """A same-named file in a private folder beside ``path``; the folder is always removed.

    Same file system, so the final ``os.replace`` is atomic; same name, so headers that
    refer to sibling files (.nhdr → .raw.gz) and bundle folder names stay right.
    """
    folder = path.parent / f".dtt-partial-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        yield folder / path.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _existing(path: str | os.PathLike[str], extensions: tuple[str, ...]) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: '{path}'", "check the path and spelling")
    if path.is_dir():
        raise InputError(f"'{path}' is a folder, not a file",
                         "for a DICOM folder use DTTLib.imaging.read_image")
    if extension_of(path) not in extensions:
        raise InputError(f"'{path.name}' has an unsupported extension for this kind of data",
                         f"use one of: {', '.join(extensions)}")
    return path


def _check_extension_fits(node: Any, path: Path) -> None:
    extension = extension_of(path)
    allowed: tuple[str, ...] = ()
    if node.IsA("vtkMRMLSegmentationNode"):
        allowed = SEGMENTATION_EXTENSIONS + (".nrrd", ".nii.gz", ".nii")
    elif node.IsA("vtkMRMLVolumeNode"):
        allowed = VOLUME_EXTENSIONS
    elif node.IsA("vtkMRMLTableNode"):
        allowed = TABLE_EXTENSIONS
    elif node.IsA("vtkMRMLMarkupsNode"):
        allowed = MARKUPS_EXTENSIONS
    elif node.IsA("vtkMRMLTextNode"):
        allowed = (".txt",)
    if allowed and extension not in allowed:
        raise InputError(f"cannot save {node.GetClassName()} '{node.GetName()}' as '{path.name}'",
                         f"use one of: {', '.join(allowed)}")


def _check_writable(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise InputError(f"folder '{folder}' does not exist", "create it first or choose another")
    if not os.access(folder, os.W_OK):
        raise ResourceError(f"folder '{folder}' is not writable", "choose a folder you can write to")


def _stem(path: Path) -> str:
    name = path.name
    extension = extension_of(path)
    return name[: -len(extension)] if extension and name.lower().endswith(extension) else path.stem


def _message_collection() -> Any:
    slicer = import_slicer()
    return slicer.vtkMRMLMessageCollection()


def _text(messages: Any) -> str:
    text = messages.GetAllMessagesAsString() if messages is not None else ""
    return text.strip() or "no details reported"


def _messages(storage: Any) -> str:
    return _text(storage.GetUserMessages())
