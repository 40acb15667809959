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
        self.initializeParameterNode()

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
