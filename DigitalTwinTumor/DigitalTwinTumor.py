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

from slicer import vtkMRMLScalarVolumeNode


def _makeDTTLibImportable() -> None:
    """Installed, DTTLib sits beside this file; from a source tree, one folder up."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isdir(os.path.join(folder, "DTTLib")) and folder not in sys.path:
            sys.path.append(folder)
            return


#
# DigitalTwinTumor
#


class DigitalTwinTumor(ScriptedLoadableModule):
    """Longitudinal tumour twin: timepoints, lesion table, RECIST, growth and what-if."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Digital Twin Tumor")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["DigitalTwinTumor developers"]
        self.parent.helpText = _(
            "Builds a digital twin of a patient's tumours from longitudinal scans: assign scans to "
            "timepoints, then see lesion measurements, RECIST 1.1 / iRECIST responses, fitted growth "
            "with uncertainty and what-if scenarios (always hypotheses, never advice). "
            'See the <a href="https://github.com/DigitalTwinTumor/DigitalTwinTumor#readme">README</a>.'
        )
        self.parent.acknowledgementText = _(
            "Uses 3D Slicer, SimpleITK and SciPy. Demo data: pyradiomics test cases (BSD-3)."
        )


#
# DigitalTwinTumorParameterNode
#


@parameterNodeWrapper
class DigitalTwinTumorParameterNode:
    """
    baselineVolume - the scan of the first timepoint.
    followUpVolume - a later scan of the same patient.
    followUpDay - days from the baseline scan to the follow-up scan.
    patientName - name of the patient item in the subject hierarchy (pseudonymous).
    """

    baselineVolume: vtkMRMLScalarVolumeNode
    followUpVolume: vtkMRMLScalarVolumeNode
    followUpDay: Annotated[float, WithinRange(1, 3650)] = 56
    patientName: str = "Patient"


#
# DigitalTwinTumorWidget
#


class DigitalTwinTumorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DigitalTwinTumor.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DigitalTwinTumorLogic()

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
        ready = bool(node and node.baselineVolume and node.followUpVolume
                     and node.baselineVolume != node.followUpVolume)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Assign both scans to timepoints") if ready else _(
            "Select two different scans")

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to set up timepoints."), waitCursor=True):
            node = self._parameterNode
            summary = self.logic.setupTimepoints(
                [node.baselineVolume, node.followUpVolume], [0.0, node.followUpDay], node.patientName)
            self.ui.statusLabel.text = summary


#
# DigitalTwinTumorLogic
#


class DigitalTwinTumorLogic(ScriptedLoadableModuleLogic):
    """Thin adapter: all work is done by DTTLib so it runs headless too."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _makeDTTLibImportable()

    def getParameterNode(self):
        return DigitalTwinTumorParameterNode(super().getParameterNode())

    def setupTimepoints(self, volumeNodes, days, patientName: str) -> str:
        """One patient, one study per timepoint; returns a one-line summary."""
        from DTTLib.mrml.hierarchy import organize_timepoints

        _patient, studies = organize_timepoints(list(volumeNodes), [float(d) for d in days], patientName)
        logging.info("DigitalTwinTumor: %d timepoints under patient '%s'", len(studies), patientName)
        return _("{count} timepoints assigned to '{name}'").format(count=len(studies), name=patientName)


#
# DigitalTwinTumorTest
#


class DigitalTwinTumorTest(ScriptedLoadableModuleTest):
    """Self-test on data it makes: two synthetic scans become two timepoints of one patient."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TimepointsFromTwoScans()

    def test_TimepointsFromTwoScans(self):
        import numpy as np

        self.delayDisplay("Starting the test")
        logic = DigitalTwinTumorLogic()
        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.hierarchy import describe
        from DTTLib.mrml.volumes import add_volume_node

        scans = [add_volume_node(ImageVolume(np.full((4, 5, 6), value, np.int16), (1, 1, 3)), name)
                 for value, name in ((10, "baseline"), (20, "follow-up"))]
        summary = logic.setupTimepoints([scans[1], scans[0]], [84, 0], "Test patient")
        self.assertIn("2 timepoints", summary)
        patients = [p for p in describe() if p.name == "Test patient"]
        self.assertEqual(len(patients), 1)
        self.assertEqual([s.nodes for s in patients[0].studies], [["baseline"], ["follow-up"]])
        self.assertEqual(patients[0].studies[1].attributes["DTT.TimepointDay"], "84.0")
        with self.assertRaises(Exception):
            logic.setupTimepoints([scans[0], scans[0]], [0, 10], "Twice the same scan")
        self.delayDisplay("Test passed")
