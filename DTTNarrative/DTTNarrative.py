import logging
import os
import sys

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from slicer import vtkMRMLTextNode


def _makeDTTLibImportable() -> None:
    """Installed, DTTLib sits beside this file; from a source tree, one folder up."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isdir(os.path.join(folder, "DTTLib")) and folder not in sys.path:
            sys.path.append(folder)
            return


#
# DTTNarrative
#


class DTTNarrative(ScriptedLoadableModule):
    """Grounded narrative summaries of the twin (MedGemma where the GPU allows, else a template)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DTT Narrative")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["DigitalTwinTumor developers"]
        self.parent.helpText = _(
            "Writes a summary of the twin's measurements grounded in its numbers. Shows which "
            "backend and precision this computer supports and why. AI-generated text is labelled "
            "as such and never gives treatment advice. Nothing leaves this computer. "
            'See the <a href="https://github.com/DigitalTwinTumor/DigitalTwinTumor#readme">README</a>.'
        )
        self.parent.acknowledgementText = _("Part of the DigitalTwinTumor extension.")


#
# DTTNarrativeParameterNode
#


@parameterNodeWrapper
class DTTNarrativeParameterNode:
    """
    outputText - text node that receives the summary.
    """

    outputText: vtkMRMLTextNode


#
# DTTNarrativeWidget
#


class DTTNarrativeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DTTNarrative.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DTTNarrativeLogic()

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
        self.ui.applyButton.enabled = True

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to detect the hardware."), waitCursor=True):
            node = self._parameterNode
            if not node.outputText:
                node.outputText = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTextNode", "DTT environment")
            self.ui.statusLabel.text = self.logic.describeEnvironment(node.outputText)


#
# DTTNarrativeLogic
#


class DTTNarrativeLogic(ScriptedLoadableModuleLogic):
    """Thin adapter: all work is done by DTTLib so it runs headless too."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _makeDTTLibImportable()

    def getParameterNode(self):
        return DTTNarrativeParameterNode(super().getParameterNode())

    def describeEnvironment(self, textNode=None) -> str:
        """Hardware, chosen profile, precision and the reasons; also written to ``textNode``."""
        from DTTLib.hardware import choose_profile, detect_hardware, env_report
        from DTTLib.hardware.report import env_report_lines

        info = detect_hardware()
        text = "\n".join(env_report_lines(env_report(info, choose_profile(info))))
        if textNode is not None:
            textNode.SetText(text)
        logging.info("DTTNarrative environment:\n%s", text)
        return text


#
# DTTNarrativeTest
#


class DTTNarrativeTest(ScriptedLoadableModuleTest):
    """Self-test: the environment summary agrees with DTTLib's decision and lands in a text node."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_EnvironmentSummary()

    def test_EnvironmentSummary(self):
        self.delayDisplay("Starting the test")
        from DTTLib.hardware import choose_profile, detect_hardware

        decision = choose_profile(detect_hardware())
        textNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTextNode", "environment")
        text = DTTNarrativeLogic().describeEnvironment(textNode)
        self.assertEqual(textNode.GetText(), text)
        self.assertIn(decision.name, text)
        self.assertIn(decision.precision.precision, text)
        self.assertIn(decision.reasons[0], text)
        self.delayDisplay("Test passed")
