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
    with SliceRenderer(view.size_px, view.orientation) as renderer:
        return renderer.render(view)


class SliceRenderer:
    """One offscreen slice view (window, slice logic, displayable managers) reused for many
    pictures of one size and orientation: setting those up costs more than drawing
    (≈ 0.3 s per picture on the 2-core sandbox), and a report draws one per lesion and scan.

    ``with SliceRenderer((360, 360)) as r: r.render_png(view, path)``; every view must have
    the renderer's size and orientation. The scene's display settings (visibility, opacity)
    are read at each render, so they may change between pictures."""

    def __init__(self, size_px: tuple[int, int] = (512, 512), orientation: str = "Axial") -> None:
        if orientation not in ORIENTATIONS:
            raise InputError(f"unknown orientation '{orientation}'", f"use one of {ORIENTATIONS}")
        self.size_px, self.orientation = tuple(size_px), orientation
        self._parts: dict[str, Any] = {}

    def __enter__(self) -> "SliceRenderer":
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        slicer = import_slicer()
        import vtk  # noqa: PLC0415

        runtime = get_runtime()
        scene = runtime.scene
        width, height = self.size_px
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
        slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode", "DTTRenderView")
        slice_node.SetLayoutName("DTTRenderView")
        slice_node.SetOrientation(self.orientation)
        slice_node.SetDimensions(width, height, 1)
        slice_logic = slicer.vtkMRMLSliceLogic()
        slice_logic.SetMRMLApplicationLogic(runtime.app_logic)
        slice_logic.SetMRMLScene(scene)
        slice_logic.SetSliceNode(slice_node)
        window = vtk.vtkRenderWindow()
        self._parts = {"scene": scene, "slice_node": slice_node, "logic": slice_logic,
                       "composite": slice_logic.GetSliceCompositeNode(), "window": window}
        window.SetOffScreenRendering(1)
        window.SetSize(width, height)
        renderer = vtk.vtkRenderer()
        window.AddRenderer(renderer)
        interactor = vtk.vtkGenericRenderWindowInteractor()  # markups widgets need one
        interactor.SetRenderWindow(window)
        mapper = vtk.vtkImageMapper()  # its input is connected per picture, once a background is set
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
        self._parts.update(renderer=renderer, interactor=interactor, mapper=mapper, group=group,
                           capture_type=vtk.vtkWindowToImageFilter)
        return self

    def render(self, view: SliceView) -> np.ndarray:
        """The view as a (rows, columns, 3) uint8 array, top row first."""
        if not self._parts:
            raise RuntimeError("use SliceRenderer in a with-statement")
        if tuple(view.size_px) != self.size_px or view.orientation != self.orientation:
            raise InputError(f"a {view.orientation} {view.size_px} view given to a {self.orientation} "
                             f"{self.size_px} renderer", "open one renderer per size and orientation")
        if view.volume_node is None or view.volume_node.GetImageData() is None:
            raise InputError("nothing to render: the volume node has no voxels", "load the scan first")
        slice_node, window = self._parts["slice_node"], self._parts["window"]
        width, height = self.size_px
        self._parts["composite"].SetBackgroundVolumeID(view.volume_node.GetID())
        logic = self._parts["logic"]
        logic.FitSliceToBackground(width, height)
        if view.field_of_view_mm:
            aspect = height / width
            slice_node.SetFieldOfView(view.field_of_view_mm, view.field_of_view_mm * aspect, slice_node.GetFieldOfView()[2])
        if view.center_ras is not None:
            slice_node.JumpSliceByCentering(*[float(c) for c in view.center_ras])
        slice_node.UpdateMatrices()
        self._parts["mapper"].SetInputConnection(logic.GetImageDataConnection())
        window.Render()
        if not window.IsCurrent() and not window.SupportsOpenGL():
            raise ResourceError("offscreen rendering is not available (no OpenGL through EGL)",
                                "install Mesa's EGL and DRI drivers (Debian: apt-get install "
                                "libegl1 libgl1-mesa-dri); pictures are skipped otherwise")
        capture = self._parts["capture_type"]()
        capture.SetInput(window)
        capture.ReadFrontBufferOff()
        capture.Update()
        return _vtk_image_to_array(capture.GetOutput())

    def render_png(self, view: SliceView, path: str | os.PathLike[str]) -> Path:
        return _write_png(self.render(view), Path(path))

    def __exit__(self, *exc_info: object) -> None:
        parts, self._parts = self._parts, {}
        if not parts:
            return
        parts["group"].SetMRMLDisplayableNode(None)
        parts["window"].Finalize()
        parts["scene"].RemoveNode(parts["composite"])
        parts["scene"].RemoveNode(parts["slice_node"])


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
