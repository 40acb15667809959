"""Offscreen slice views with Slicer's own displayable managers, saved as PNG.

The report, the narrative's evidence images and the README screenshot show lesions exactly
as Slicer draws them (segment fill/outline, RECIST line with its length label) because we
use the real slice logic and displayable managers, rendered through EGL without a screen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import InputError, ResourceError
from DTTLib.mrml.runtime import get_runtime, import_slicer

#: Displayable managers a 2-D lesion view needs.
SLICE_DISPLAYABLE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLMarkupsDisplayableManager")
ORIENTATIONS = ("Axial", "Sagittal", "Coronal")


@dataclass(frozen=True)
class SliceView:
    """What to show: a volume, centred on a RAS point, in a plane, over a field of view."""

    volume_node: Any
    center_ras: tuple[float, float, float] | None = None
    orientation: str = "Axial"
    size_px: tuple[int, int] = (512, 512)
    field_of_view_mm: float | None = None  # width of the view; None = the whole volume


def render_slice_png(view: SliceView, path: str | os.PathLike[str]) -> Path:
    """Render the view (with every visible segmentation and markup) to a PNG file."""
    pixels = render_slice_rgb(view)
    return _write_png(pixels, Path(path))


def render_slice_rgb(view: SliceView) -> np.ndarray:
    """The rendered view as a (rows, columns, 3) uint8 array, top row first."""
    if view.orientation not in ORIENTATIONS:
        raise InputError(f"unknown orientation '{view.orientation}'", f"use one of {ORIENTATIONS}")
    if view.volume_node is None or view.volume_node.GetImageData() is None:
        raise InputError("nothing to render: the volume node has no voxels", "load the scan first")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    slicer = import_slicer()
    import vtk  # noqa: PLC0415

    runtime = get_runtime()
    scene = runtime.scene
    width, height = view.size_px
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode", "DTTRenderView")
    slice_node.SetLayoutName("DTTRenderView")
    slice_node.SetOrientation(view.orientation)
    slice_node.SetDimensions(width, height, 1)
    slice_logic = slicer.vtkMRMLSliceLogic()
    slice_logic.SetMRMLApplicationLogic(runtime.app_logic)
    slice_logic.SetMRMLScene(scene)
    slice_logic.SetSliceNode(slice_node)
    composite = slice_logic.GetSliceCompositeNode()
    window = vtk.vtkRenderWindow()
    try:
        composite.SetBackgroundVolumeID(view.volume_node.GetID())
        slice_logic.FitSliceToBackground(width, height)
        if view.field_of_view_mm:
            aspect = height / width
            slice_node.SetFieldOfView(view.field_of_view_mm, view.field_of_view_mm * aspect, slice_node.GetFieldOfView()[2])
        if view.center_ras is not None:
            slice_node.JumpSliceByCentering(*[float(c) for c in view.center_ras])
        slice_node.UpdateMatrices()

        window.SetOffScreenRendering(1)
        window.SetSize(width, height)
        renderer = vtk.vtkRenderer()
        window.AddRenderer(renderer)
        interactor = vtk.vtkGenericRenderWindowInteractor()  # markups widgets need one
        interactor.SetRenderWindow(window)
        mapper = vtk.vtkImageMapper()
        mapper.SetInputConnection(slice_logic.GetImageDataConnection())
        mapper.SetColorWindow(255.0)
        mapper.SetColorLevel(127.5)
        image_actor = vtk.vtkActor2D()
        image_actor.SetMapper(mapper)
        renderer.AddViewProp(image_actor)

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(runtime.app_logic)
        for manager in SLICE_DISPLAYABLE_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        group = factory.InstantiateDisplayableManagers(renderer)
        group.SetMRMLDisplayableNode(slice_node)
        window.Render()
        if not window.IsCurrent() and not window.SupportsOpenGL():
            raise ResourceError("offscreen rendering is not available (no OpenGL through EGL)",
                                "install Mesa's EGL and DRI drivers (Debian: apt-get install "
                                "libegl1 libgl1-mesa-dri); pictures are skipped otherwise")
        capture = vtk.vtkWindowToImageFilter()
        capture.SetInput(window)
        capture.ReadFrontBufferOff()
        capture.Update()
        pixels = _vtk_image_to_array(capture.GetOutput())
        group.SetMRMLDisplayableNode(None)
        del group
        return pixels
    finally:
        window.Finalize()
        scene.RemoveNode(composite)
        scene.RemoveNode(slice_node)


def _vtk_image_to_array(image: Any) -> np.ndarray:
    from vtk.util.numpy_support import vtk_to_numpy  # noqa: PLC0415

    width, height, _ = image.GetDimensions()
    scalars = vtk_to_numpy(image.GetPointData().GetScalars())
    rgb = scalars.reshape(height, width, -1)[:, :, :3]
    return np.ascontiguousarray(rgb[::-1])  # VTK's first row is the bottom one


def _write_png(pixels: np.ndarray, path: Path) -> Path:
    from PIL import Image  # noqa: PLC0415 - pillow comes with matplotlib/torchvision

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path
