"""Volume sequences (Slicer's Sequences module) ↔ per-frame images, segments and measurements.

A 4-D series (a sequence of volumes) is shown through a browser node: the volume the user
picks is the browser's *proxy*, and the frames live in the sequence node. A lesion segmented
on every frame is stored the same way, as a sequence of segmentations synchronised with that
browser, so stepping through the frames shows each frame's own outline. Each frame's segment
is "<lesion> @ <frame>" with the lesion terminology, like a single-frame result, and one table
row per frame holds its measurements or why it has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.mrml.runtime import get_scene, import_slicer

#: attribute on a result sequence: which lesion it holds (so re-running replaces it)
LESION_ATTRIBUTE = "DTT.SequenceLesion"


@dataclass(frozen=True)
class VolumeSequence:
    """The browser, the volume sequence and its proxy (the volume shown in the views)."""

    browser: Any
    sequence: Any
    proxy: Any

    @property
    def frame_count(self) -> int:
        return int(self.sequence.GetNumberOfDataNodes())

    def frame_label(self, n: int) -> str:
        """E.g. "time 12.5 s": the sequence's index name, value and unit (never an '@', which
        separates lesion and timepoint in segment names)."""
        name = self.sequence.GetIndexName() or "frame"
        unit = self.sequence.GetIndexUnit() or ""
        value = self.sequence.GetNthIndexValue(n)
        return f"{name} {value}{' ' + unit if unit else ''}".replace("@", "at").strip()

    def frame_image(self, n: int) -> ImageVolume:
        """Frame ``n``'s voxels and geometry (with the proxy's modality: frames carry no DICOM tags)."""
        from DTTLib.mrml.volumes import image_from_volume_node, volume_modality  # noqa: PLC0415

        node = self.sequence.GetNthDataNode(n)
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"frame {n} of sequence '{self.sequence.GetName()}' is not a scalar volume",
                             "segment a sequence of scalar volumes")
        image = image_from_volume_node(node)
        modality = volume_modality(self.proxy)
        if modality and "dicom" not in image.metadata:
            image.metadata["dicom"] = {"Modality": modality}
        return image

    def frame_images(self) -> list[tuple[str, ImageVolume]]:
        return [(self.frame_label(n), self.frame_image(n)) for n in range(self.frame_count)]


def volume_sequence(volume_node: Any) -> VolumeSequence | None:
    """The sequence behind ``volume_node`` when it is a browser's proxy of a volume sequence, else None."""
    slicer = import_slicer()
    if volume_node is None:
        return None
    logic = slicer.modules.sequences.logic()
    browser = logic.GetFirstBrowserNodeForProxyNode(volume_node)
    if browser is None:
        return None
    sequence = browser.GetSequenceNode(volume_node)
    if sequence is None or sequence.GetNumberOfDataNodes() == 0:
        return None
    return VolumeSequence(browser, sequence, volume_node)


def store_frame_masks(series: VolumeSequence, masks: list[np.ndarray | None], lesion_id: str,
                      organ: str = "", nodal: bool = False, scene: Any = None) -> Any:
    """Write one segmentation per frame into a sequence synchronised with the series' browser
    (replacing this lesion's earlier one) and return the proxy segmentation node.

    ``masks[n]`` is frame n's (k, j, i) mask on that frame's grid, or None when the frame has no
    result: that frame gets the segment empty, so the views show nothing rather than the
    neighbouring frame's outline."""
    from DTTLib.mrml.lesions import lesion_segment_name, write_lesion_anatomy  # noqa: PLC0415
    from DTTLib.mrml.segmentations import add_segmentation_node, set_segment_mask  # noqa: PLC0415

    slicer = import_slicer()
    scene = scene or get_scene()
    if len(masks) != series.frame_count:
        raise InputError(f"{len(masks)} masks for {series.frame_count} frames", "give one mask (or None) per frame")
    scene.SaveStateForUndo()
    target = _lesion_sequence(series, lesion_id)
    if target is None:
        target = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{lesion_id} on {series.sequence.GetName()}")
        target.SetAttribute(LESION_ATTRIBUTE, lesion_id)
    target.RemoveAllDataNodes()
    target.SetIndexName(series.sequence.GetIndexName())
    target.SetIndexUnit(series.sequence.GetIndexUnit())
    target.SetIndexType(series.sequence.GetIndexType())
    for n, mask in enumerate(masks):
        frame = series.sequence.GetNthDataNode(n)
        holder = add_segmentation_node(frame, f"{lesion_id} frame {n}", scene=scene)
        try:
            empty = np.zeros(tuple(reversed(frame.GetImageData().GetDimensions())), np.uint8)
            segment_id = set_segment_mask(holder, empty if mask is None else mask,
                                          lesion_segment_name(lesion_id, series.frame_label(n)), frame,
                                          allow_empty=True)
            write_lesion_anatomy(holder.GetSegmentation().GetSegment(segment_id), organ, nodal)
            target.SetDataNodeAtValue(holder, series.sequence.GetNthIndexValue(n))
        finally:
            scene.RemoveNode(holder)
    if not series.browser.IsSynchronizedSequenceNode(target.GetID()):
        series.browser.AddSynchronizedSequenceNode(target)
    logic = slicer.modules.sequences.logic()
    logic.UpdateProxyNodesFromSequences(series.browser)
    proxy = series.browser.GetProxyNode(target)
    if proxy is not None:
        proxy.SetName(f"{lesion_id} (every frame)")
        if proxy.GetDisplayNode() is None:
            proxy.CreateDefaultDisplayNodes()
    return proxy


def _lesion_sequence(series: VolumeSequence, lesion_id: str) -> Any:
    """This lesion's result sequence already synchronised with the browser, if any."""
    import vtk  # noqa: PLC0415

    nodes = vtk.vtkCollection()
    series.browser.GetSynchronizedSequenceNodes(nodes, True)
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetAttribute(LESION_ATTRIBUTE) == lesion_id:
            return node
    return None


def frame_rows(series: VolumeSequence, results: list[Any], lesion_id: str) -> list[dict[str, Any]]:
    """One table row per frame: its index value, measurements, or the reason it has none."""
    by_frame = {result.frame: result for result in results}
    rows = []
    for n in range(series.frame_count):
        result = by_frame.get(n)
        measured = result.measurement if result is not None else None
        rows.append({
            "lesion": lesion_id, "frame": n, "index": series.sequence.GetNthIndexValue(n),
            "longest_diameter_mm": measured.longest_diameter_mm if measured else float("nan"),
            "short_axis_mm": measured.short_axis_mm if measured else float("nan"),
            "volume_mm3": measured.volume_mm3 if measured else float("nan"),
            "first_slice": measured.slices[0] if measured else -1,
            "last_slice": measured.slices[1] if measured else -1,
            "status": "measured" if measured else (result.problem if result is not None else "not run (cancelled)"),
        })
    return rows


def store_frame_table(series: VolumeSequence, results: list[Any], lesion_id: str, scene: Any = None) -> Any:
    """The lesion's per-frame measurements as a table node (replaced on re-run)."""
    from DTTLib.mrml.tables import add_table_node, update_table_node  # noqa: PLC0415

    scene = scene or get_scene()
    name = f"{lesion_id} on {series.sequence.GetName()} (measurements)"
    rows = frame_rows(series, results, lesion_id)
    existing = scene.GetFirstNodeByName(name)
    if existing is not None and existing.IsA("vtkMRMLTableNode"):
        update_table_node(existing, rows)
        return existing
    return add_table_node(rows, name, scene=scene)
