"""DTT Segmentation: corrections — after the reader fixes a lesion on one slice in the Segment Editor,
*Re-run from this slice* keeps that slice exactly and segments the others again from it
(DTTLib.segmentation.scene.recompute_from_outline).

Widget, logic and self-test parts are mixed into the module's classes (DTTSegmentation.py).
"""

import slicer
import vtk
from slicer.i18n import tr as _

from DTTSegmentationLib.Common import edgeRefinementOverride, lesionOrgan


class CorrectionsWidget:
    """The widget's part (uses the module widget's controls, logic and job runner)."""

    def onRerunFromSlice(self) -> None:
        """Re-segment the current lesion's segment from the slice shown in the Red view, where the
        user corrected it: the model runs in a worker thread (progress, Cancel); the result replaces
        the same segment on the GUI thread (one undo step). Cancel leaves the segment unchanged."""
        node = self._parameterNode
        model = self.modelCombo.currentData
        if not (node and node.inputVolume and node.segmentation) or model == "threshold" or self._job is not None:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to re-run the lesion from this slice."), waitCursor=True):
            from DTTLib.errors import InputError
            from DTTLib.mrml.volumes import image_from_volume_node

            volume, segmentation = node.inputVolume, node.segmentation
            segmentId = self.logic.lesionSegmentId(segmentation, node.lesionId, node.timepointLabel)
            if not segmentId:
                raise InputError(f"'{segmentation.GetName()}' has no segment for lesion '{node.lesionId}' at "
                                 f"timepoint '{node.timepointLabel}'",
                                 "set Lesion id and Timepoint label to those of the segment you corrected")
            if not self._boxModelReady(model, then=self.onRerunFromSlice):
                return
            image = image_from_volume_node(volume)  # also refuses a volume under a transform
            k = self.logic.volumeSliceIndex(volume, self._sliceNode("Red"), "Red")
            outline, guide = self.logic.lesionOutlineAndGuide(volume, segmentation, segmentId, k, "Red")
            segmenter = self.logic.segmenter(model)
            refineEdges = edgeRefinementOverride(node.refineEdges)
            organ = self.logic.segmentLesionOrgan(segmentation, segmentId, node.organ, node.lymphNode)
            masking = self.logic.masking(self.otherSegmentsCombo.currentData)
            name = segmentation.GetSegmentation().GetSegment(segmentId).GetName()
            self.ui.statusLabel.text = _("{name}: re-running from slice k={k}…").format(name=name, k=k)

        def compute(progress, should_cancel):
            return self.logic.recomputeFromOutline(image, k, outline, segmenter, progress=progress,
                                                   should_cancel=should_cancel, refineEdges=refineEdges,
                                                   organ=organ, guide=guide)

        def finish(computed):
            if computed.cancelled:
                self.ui.statusLabel.text = _("Re-run cancelled: {name} unchanged").format(name=name)
                return
            with slicer.util.tryWithErrorDisplay(_("Failed to store the lesion."), waitCursor=True):
                self._checkStillInScene(volume, segmentation)
                stored = self.logic.storeRecomputed(computed, image, volume, segmentation, segmentId,
                                                    masking=masking)
                self._showStoredLesion(stored, computed)

        self._runInBackground(compute, finish, _("Failed to re-run the lesion from this slice: {error}"))

    @staticmethod
    def _sliceNode(viewName: str):
        """The slice node of a slice view of the layout ("Red", "Green", "Yellow")."""
        from DTTLib.errors import InputError

        layoutManager = slicer.app.layoutManager()
        sliceWidget = layoutManager.sliceWidget(viewName) if layoutManager else None
        if sliceWidget is None:
            raise InputError(f"there is no {viewName} slice view",
                             f"choose a layout that shows the {viewName} view (View → Layout → Four-Up)")
        return sliceWidget.mrmlSliceNode()

    def _updateRerunButton(self) -> None:
        """'Re-run from this slice' is enabled for the current lesion's segment (lesion id @ timepoint)
        when it is in the chosen segmentation and a model (not the threshold) is chosen."""
        if not hasattr(self, "rerunButton"):
            return
        node = self._parameterNode
        reason = ""
        if self._job is not None:
            reason = _("Wait for the running segmentation to finish or cancel it")
        elif not (node and node.inputVolume and node.segmentation):
            reason = _("Select a scan and the segmentation that holds the lesion")
        elif self.modelCombo.currentData == "threshold":
            reason = _("Choose a box-prompt model (not the threshold)")
        elif not self.logic.lesionSegmentId(node.segmentation, node.lesionId, node.timepointLabel):
            reason = _("The segmentation has no segment '{lesion} @ {timepoint}': set Lesion id and Timepoint "
                       "label to the lesion you corrected").format(lesion=node.lesionId, timepoint=node.timepointLabel)
        self.rerunButton.enabled = not reason
        self.rerunButton.toolTip = reason or _(
            "After correcting the selected lesion segment on one slice with the Segment Editor, re-segment the "
            "other slices from that slice. The corrected slice is kept exactly as drawn; one undo step.")


class CorrectionsLogic:
    """The logic's part (no GUI)."""

    @staticmethod
    def volumeSliceIndex(volumeNode, sliceNode, viewName="Red") -> int:
        """The k (IJK) of the volume's slice that ``sliceNode`` shows (its SliceToRAS origin through
        the volume's RAS-to-IJK matrix). InputError, saying which orientation to choose, when the
        view's plane is not one of the volume's slices (k drifts by more than half a slice across
        the scan within the plane), or when the plane lies outside the volume."""
        import math

        import numpy as np

        from DTTLib.errors import InputError

        name = volumeNode.GetName()
        if volumeNode.GetParentTransformNode() is not None:
            raise InputError(f"volume '{name}' is under a transform",
                             "harden the transform (Data module → right-click → Harden transform)")
        rasToIJK, ijkToRAS = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        volumeNode.GetRASToIJKMatrix(rasToIJK)
        volumeNode.GetIJKToRASMatrix(ijkToRAS)
        toIJK = slicer.util.arrayFromVTKMatrix(rasToIJK)
        sliceToRAS = slicer.util.arrayFromVTKMatrix(sliceNode.GetSliceToRAS())
        kPerMm = toIJK[2, :3]  # how k changes along a RAS direction (per mm)
        inPlane = sliceToRAS[:3, :2] / np.linalg.norm(sliceToRAS[:3, :2], axis=0)
        dims = np.array(volumeNode.GetImageData().GetDimensions())
        extentMm = float(np.linalg.norm(dims * np.array(volumeNode.GetSpacing())))
        drift = float(np.linalg.norm(kPerMm @ inPlane)) * extentMm
        if drift > 0.5:
            kAxis = slicer.util.arrayFromVTKMatrix(ijkToRAS)[:3, 2]
            orientation = ("Sagittal", "Coronal", "Axial")[int(np.argmax(np.abs(kAxis)))]
            normal = sliceToRAS[:3, 2] / np.linalg.norm(sliceToRAS[:3, 2])
            cosine = abs(float(normal @ kPerMm)) / float(np.linalg.norm(kPerMm))
            tilt = math.degrees(math.acos(min(cosine, 1.0)))
            raise InputError(
                f"the {viewName} slice view does not show a slice of '{name}': its plane is tilted {tilt:.1f}° "
                f"from the scan's slices, which are {orientation.lower()}",
                f"set the {viewName} view's orientation to {orientation} and, if the scan is oblique, click "
                f"'Rotate to volume plane' in the {viewName} view's slice controller; then show the corrected slice")
        k = float((toIJK @ sliceToRAS[:, 3])[2])
        # the slice the view shows: VTK's nearest-neighbour reslice rounds half up (vtkInterpolationMath::
        # Round); Python's round() rounds half to even and would take the slice below at k = 2.5
        index = int(math.floor(k + 0.5))
        if not 0 <= index < dims[2]:
            raise InputError(f"the {viewName} slice view is at k={k:.1f}, outside '{name}' (slices 0–{dims[2] - 1})",
                             f"scroll the {viewName} view to the slice you corrected")
        return index

    @staticmethod
    def lesionOutlineAndGuide(volumeNode, segmentationNode, segmentId, k, viewName="Red"):
        """(outline, guide) on the volume's grid: the segment on slice ``k`` (bool rows × columns) and
        the whole segment (bool k, j, i). InputError when the segment has no voxel on that slice."""
        from DTTLib.errors import InputError
        from DTTLib.mrml.segmentations import get_segment_mask

        guide = get_segment_mask(segmentationNode, segmentId, volumeNode) > 0
        if not 0 <= k < guide.shape[0]:
            raise InputError(f"slice k={k} is outside '{volumeNode.GetName()}' (slices 0–{guide.shape[0] - 1})",
                             "choose a slice of the scan")
        outline = guide[k].copy()
        if not outline.any():
            segmentName = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
            raise InputError(f"segment '{segmentName}' is empty on slice k={k}, the slice shown in the {viewName} view",
                             f"scroll the {viewName} view to the slice you corrected, or draw the lesion on this "
                             "slice with the Segment Editor")
        return outline, guide

    @staticmethod
    def segmentLesionOrgan(segmentationNode, segmentId, organ="", lymphNode=False) -> str:
        """The organ a lesion's segment is segmented again for: its DTT.Organ / DTT.Nodal tags, or when
        it has none, ``organ`` / ``lymphNode`` (see lesionOrgan)."""
        from DTTLib.mrml.lesions import read_lesion_anatomy

        anatomy = read_lesion_anatomy(segmentationNode.GetSegmentation().GetSegment(segmentId))
        if anatomy is not None:
            organ, lymphNode = anatomy
        return lesionOrgan(organ, lymphNode)

    def recomputeFromOutline(self, image, k, outline, segmenter, progress=None, should_cancel=None,
                             refineEdges=None, organ="", guide=None):
        """Pure computation (no MRML): safe in a worker thread. The lesion segmented again from
        ``outline`` on slice ``k`` (kept exactly as drawn), guided by its earlier mask ``guide``."""
        from DTTLib.segmentation.scene import recompute_from_outline

        return recompute_from_outline(image, k, outline, segmenter, progress, should_cancel, organ=organ or "",
                                      refine_edges=refineEdges, guide=guide)

    def storeRecomputed(self, computed, image, volumeNode, segmentationNode, segmentId, overwriteOthers=False,
                        masking=None):
        """GUI thread: the recomputed lesion replaces the SAME segment, by the 3-D action's store
        (store_lesion: one undo step, other segments' voxels respected unless overwriteOthers). The
        segment keeps its organ / lymph-node tags."""
        from DTTLib.errors import InputError
        from DTTLib.mrml.lesions import lesion_segment_name, parse_lesion_segment_name
        from DTTLib.segmentation.scene import store_lesion

        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        if segment is None:
            raise InputError(f"the lesion's segment was removed from '{segmentationNode.GetName()}'",
                             "undo the removal or segment the lesion again")
        parsed = parse_lesion_segment_name(segment.GetName())
        if parsed is None or lesion_segment_name(*parsed) != segment.GetName():
            raise InputError(f"segment '{segment.GetName()}' is not named '<lesion id> @ <timepoint>'",
                             "rename it, e.g. 'L1 @ t0'")
        return store_lesion(computed, image, volumeNode, segmentationNode, parsed[0], parsed[1], overwriteOthers,
                            scene=slicer.mrmlScene, masking=masking)

    def recomputeFromSlice(self, volumeNode, segmentationNode, segmentId, k, segmenter="litemedsam", progress=None,
                           should_cancel=None, refineEdges=None, organ="", lymphNode=False, overwriteOthers=False):
        """'Re-run from this slice', headless: the segment's outline on slice ``k`` (e.g. corrected in
        the Segment Editor) is kept exactly, the other slices are segmented again from it, guided by
        the segment's whole mask, and the result replaces the segment (one undo step). ``segmenter``:
        a model key (see availableModels) or a segmenter. Returns (ComputedLesion, StoredModelLesion),
        the stored part None when cancelled (the segment is then unchanged)."""
        from DTTLib.mrml.volumes import image_from_volume_node

        image = image_from_volume_node(volumeNode)
        outline, guide = self.lesionOutlineAndGuide(volumeNode, segmentationNode, segmentId, k)
        if isinstance(segmenter, str):
            segmenter = self.segmenter(segmenter)
        computed = self.recomputeFromOutline(image, k, outline, segmenter, progress, should_cancel, refineEdges,
                                             self.segmentLesionOrgan(segmentationNode, segmentId, organ, lymphNode),
                                             guide)
        if computed.cancelled:
            return computed, None
        return computed, self.storeRecomputed(computed, image, volumeNode, segmentationNode, segmentId,
                                              overwriteOthers)


class CorrectionsTest:
    """The self-test's part (run by DTTSegmentationTest.runTest)."""

    def test_RerunFromCorrectedSlice(self, lesion=None):
        """'Re-run from this slice': the model's lesion (test_ModelRespectsOtherSegments) is corrected
        on one slice (eroded by a pixel, as a Segment Editor edit would), the slice is found from a
        slice view's plane, and the lesion is segmented again from it: that slice is kept exactly,
        the lesion still spans its slices, the other segment is untouched."""
        import numpy as np
        from scipy import ndimage

        from DTTLib.errors import InputError
        from DTTLib.mrml.segmentations import get_segment_mask, set_segment_mask

        if lesion is None:
            lesion = self.test_ModelRespectsOtherSegments()
            if lesion is None:
                return
        logic, volume, segmentation, stored = lesion
        segmentId = logic.lesionSegmentId(segmentation, " L1 ", "t0")
        self.assertEqual(segmentId, stored.segment_id)
        self.assertEqual(logic.lesionSegmentId(segmentation, "L2", "t0"), "")
        self.assertEqual(logic.lesionSegmentId(segmentation, "", "t0"), "")

        # the slice a view shows: an axial plane at S = 15 mm is slice k = 5 (spacing 3 mm, origin 0)
        import math

        sliceNode = slicer.vtkMRMLSliceNode()  # not in the scene: no view is made for it

        def showPlane(rows, s):
            matrix = vtk.vtkMatrix4x4()
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    matrix.SetElement(r, c, value)
            matrix.SetElement(2, 3, s)
            sliceNode.GetSliceToRAS().DeepCopy(matrix)

        axial, sagittal = ((-1, 0, 0), (0, 1, 0), (0, 0, 1)), ((0, 0, 1), (-1, 0, 0), (0, 1, 0))
        cos, sin = math.cos(math.radians(10)), math.sin(math.radians(10))
        tilted = ((-1, 0, 0), (0, cos, -sin), (0, sin, cos))  # 10° about R
        showPlane(axial, 15.4)
        k = logic.volumeSliceIndex(volume, sliceNode)
        self.assertEqual(k, 5)
        for rows, s, text in ((sagittal, 15.0, "orientation to Axial"), (tilted, 15.0, "tilted 10.0°"),
                              (axial, 40.0, "outside")):
            showPlane(rows, s)
            with self.assertRaisesRegex(InputError, text):
                logic.volumeSliceIndex(volume, sliceNode)

        # the user corrects slice k (one pixel eroded) and re-runs from it
        before = get_segment_mask(segmentation, segmentId, volume) > 0
        lesionSlices = np.nonzero(before.any(axis=(1, 2)))[0]
        self.assertIn(k, lesionSlices)
        corrected = before.copy()
        corrected[k] = ndimage.binary_erosion(before[k])
        set_segment_mask(segmentation, corrected, stored.segment_name, volume)
        with self.assertRaisesRegex(InputError, "empty on slice k=0"):
            logic.recomputeFromSlice(volume, segmentation, segmentId, 0)
        computed, restored = logic.recomputeFromSlice(volume, segmentation, segmentId, k)
        after = get_segment_mask(segmentation, segmentId, volume) > 0
        self.assertEqual(restored.segment_id, segmentId)
        self.assertEqual(restored.segment_name, "L1 @ t0")
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 2)
        self.assertTrue(np.array_equal(after[k], corrected[k]), "the corrected slice was not kept as drawn")
        self.assertTrue(computed.outline.endswith(f"slice {k} as drawn"), computed.outline)
        afterSlices = np.nonzero(after.any(axis=(1, 2)))[0]
        self.assertLessEqual(afterSlices[0], lesionSlices[0])  # the lesion still reaches its first slice
        self.assertGreaterEqual(afterSlices[-1], lesionSlices[-1])  # and its last
        self.assertLessEqual(afterSlices[-1] - afterSlices[0], lesionSlices[-1] - lesionSlices[0] + 2)
        self.assertLessEqual(abs(int(after.sum()) - int(before.sum())), 0.25 * before.sum())
        self.assertEqual(int(get_segment_mask(segmentation, "Other", volume).sum()), 16)
        self.assertLesionTags(segmentation, "L1 @ t0", "lymph node", "true")  # tags kept
        self.delayDisplay("Re-run from a corrected slice passed")
