"""numpy volumes ↔ ``vtkMRMLScalarVolumeNode`` with exact geometry."""

from __future__ import annotations

from typing import Any

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.mrml._vtk import array_from_matrix4x4, matrix4x4_from_array
from DTTLib.mrml.runtime import get_scene, import_slicer


def add_volume_node(image: ImageVolume, name: str | None = None, scene: Any = None,
                    labelmap: bool = False) -> Any:
    """Add ``image`` to the scene as a scalar (or labelmap) volume node; voxels are copied."""
    slicer = import_slicer()
    image.validate()
    scene = scene or get_scene()
    class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(class_name, name or image.name or "Volume")
    # Set spacing, origin and directions separately: decomposing a 4x4 matrix would
    # round the spacing by an ulp, and we promise exact round trips.
    node.SetSpacing(*image.spacing)
    node.SetOrigin(*image.origin)
    directions = np.eye(4)
    directions[:3, :3] = image.direction
    node.SetIJKToRASDirectionMatrix(matrix4x4_from_array(directions))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(image.array))
    node.CreateDefaultDisplayNodes()
    for key, value in image.metadata.items():
        if isinstance(value, (str, int, float)):
            node.SetAttribute(f"DTT.{key}", str(value))
    return node


def image_from_volume_node(node: Any) -> ImageVolume:
    """Copy a volume node's voxels and geometry into an :class:`ImageVolume`."""
    slicer = import_slicer()
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError("expected a scalar volume node",
                         "select a volume (not a segmentation, model or vector volume)")
    if node.GetImageData() is None:
        raise InputError(f"volume '{node.GetName()}' has no voxel data",
                         "load the image again; the node is empty")
    if node.GetParentTransformNode() is not None:
        raise InputError(f"volume '{node.GetName()}' is under a transform",
                         "harden the transform (Data module → right-click → Harden transform)")
    directions = _new_matrix()
    node.GetIJKToRASDirectionMatrix(directions)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    modality = volume_modality(node)
    return ImageVolume(array=array, spacing=node.GetSpacing(), origin=node.GetOrigin(),
                       direction=array_from_matrix4x4(directions)[:3, :3], name=node.GetName(),
                       metadata={"dicom": {"Modality": modality}} if modality else {})


def volume_modality(node: Any) -> str:
    """The scan's modality ("CT", "MR", …) as Slicer's DICOM import records it, or "".

    Looked up on the node ("DICOM.Modality") and on its subject-hierarchy series item, where
    the DICOM module puts it; segmentation chooses its intensity window from it."""
    slicer = import_slicer()
    name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMSeriesModalityAttributeName()
    value = node.GetAttribute(name) or ""
    scene = node.GetScene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None
    if not value and sh is not None:
        item = sh.GetItemByDataNode(node)
        if item:
            value = sh.GetItemAttribute(item, name) or ""
    return value.strip().upper()


def _new_matrix() -> Any:
    import vtk  # noqa: PLC0415

    return vtk.vtkMatrix4x4()
