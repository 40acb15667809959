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
        self.ui.generateButton.connect("clicked(bool)", self.onGenerate)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.backendCombo.connect("currentIndexChanged(int)", self.onBackendChanged)
        self.ui.disclaimerLabel.text = self._disclaimer()
        self._result = None
        self._cancel = None
        self.initializeParameterNode()
        self.onBackendChanged()

    def cleanup(self) -> None:
        self.onCancel()
        self.removeObservers()

    def _disclaimer(self) -> str:
        from DTTLib.narrative import DISCLAIMER

        return DISCLAIMER

    def onBackendChanged(self, index=None) -> None:
        requested = self.ui.backendCombo.currentText
        try:
            backend, device, reason = self.logic.backendAndReason(None if requested == "auto" else requested)
            self.ui.backendLabel.text = f"{backend} on {device}: {reason}"
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self.ui.backendLabel.text = str(exc)

    def onGenerate(self) -> None:
        """Runs in a worker thread; a timer moves streamed text into the panel."""
        import queue
        import threading

        import qt

        requested = self.ui.backendCombo.currentText
        backend, _device, _reason = self.logic.backendAndReason(None if requested == "auto" else requested)
        path = self.ui.twinPathEdit.currentPath
        chunks = queue.Queue()
        self._cancel = threading.Event()
        self.ui.narrativeBrowser.plainText = ""
        self.ui.generateButton.enabled, self.ui.cancelButton.enabled = False, True

        def work():
            try:
                chunks.put(("done", self.logic.generate(path, backend, onText=lambda t: chunks.put(("text", t)),
                                                        cancel=self._cancel)))
            except Exception as exc:  # noqa: BLE001 - reported in the panel
                chunks.put(("error", exc))

        def poll():
            while not chunks.empty():
                kind, value = chunks.get()
                if kind == "text":
                    self.ui.narrativeBrowser.plainText += value
                    continue
                timer.stop()
                self.ui.generateButton.enabled, self.ui.cancelButton.enabled = True, False
                if kind == "error":
                    self.ui.flagsLabel.text = f"Error: {value}"
                    return
                self._showResult(value)

        timer = qt.QTimer()
        timer.setInterval(100)
        timer.connect("timeout()", poll)
        self._timer = timer
        timer.start()
        threading.Thread(target=work, daemon=True).start()

    def _showResult(self, result) -> None:
        self._result = result
        self.ui.narrativeBrowser.setMarkdown(result.text)
        flags = result.flags or ["none"]
        self.ui.flagsLabel.text = (f"Backend: {result.backend}; numbers checked: "
                                   f"{result.grounding['numbers_checked']}; flags: " + " | ".join(flags))
        node = self.logic.saveTextNode(result)
        if self._parameterNode:
            self._parameterNode.outputText = node

    def onCancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def onExport(self) -> None:
        import qt

        if self._result is None:
            return
        path = qt.QFileDialog.getSaveFileName(None, "Export narrative", "narrative.md", "Markdown (*.md)")
        if path:
            self.logic.exportMarkdown(self._result, path)

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

    def backendAndReason(self, requested=None):
        """(backend, device, reason) for this machine."""
        from DTTLib.hardware import choose_profile, detect_hardware
        from DTTLib.narrative.backends import choose_backend

        profile = choose_profile(detect_hardware())
        backend, reason = choose_backend(requested, profile)
        device = "cpu" if backend == "template" else profile.settings["narrative"]["device"]
        return backend, device, reason

    def generate(self, twinPath, backend="template", model=None, onText=None, cancel=None):
        """A NarrativeResult from the twin summary JSON (runs in a worker thread in the GUI)."""
        from DTTLib.narrative import load_facts, narrate

        facts = load_facts(twinPath)
        generator = None
        if backend != "template":
            from DTTLib.models import ModelManager
            from DTTLib.narrative.backends import medgemma_generator

            generator = medgemma_generator(ModelManager.for_this_machine(), model or backend, name=backend)
        return narrate(facts, generator, on_text=onText, cancel=cancel)

    def saveTextNode(self, result, name="DTT narrative"):
        """The narrative as a text node (label and disclaimer included), with its provenance."""
        from DTTLib.mrml.texts import add_text_node

        return add_text_node(result.text, name, attributes={
            "DTT.NarrativeBackend": result.backend,
            "DTT.Ungrounded": ",".join(result.grounding.get("ungrounded", [])),
            "DTT.Flags": " | ".join(result.flags)})

    def exportMarkdown(self, result, path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(result.markdown())


#
# DTTNarrativeTest
#


class DTTNarrativeTest(ScriptedLoadableModuleTest):
    """Self-test: the template narrative of a synthetic twin is grounded, labelled and saved."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TemplateNarrative()

    def test_TemplateNarrative(self):
        self.delayDisplay("Starting the test")
        import json
        import tempfile

        from DTTLib.narrative import DISCLAIMER
        from DTTLib.narrative.example import example_twin

        logic = DTTNarrativeLogic()
        backend, device, reason = logic.backendAndReason("template")
        self.assertEqual((backend, device), ("template", "cpu"))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "twin.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(example_twin(), handle)
            result = logic.generate(path, "template")
            self.assertEqual(result.grounding["ungrounded"], [])
            self.assertGreater(result.grounding["numbers_checked"], 20)
            self.assertIn("low-confidence", result.text)
            self.assertIn(DISCLAIMER, result.text)
            node = logic.saveTextNode(result)
            self.assertEqual(node.GetText(), result.text)
            self.assertEqual(node.GetAttribute("DTT.NarrativeBackend"), "template")
            markdown = os.path.join(folder, "narrative.md")
            logic.exportMarkdown(result, markdown)
            with open(markdown, encoding="utf-8") as handle:
                self.assertTrue(handle.read().startswith("*"))
        self.delayDisplay("Test passed")
