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

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


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
    baselineVolume / followUpVolume - the scans of the first and a later timepoint.
    baselineSegmentation / followUpSegmentation - their lesion segmentations (one segment per lesion).
    followUpDay - days from the baseline scan to the follow-up scan.
    patientName - name of the patient item in the subject hierarchy (pseudonymous).
    therapyLog - "start-end:level; ..." in days from baseline (empty end = ongoing).
    followUpNonTarget - non-target assessment at follow-up (none, CR, nonCR_nonPD, PD, NE).
    registerScans - register the follow-up to the baseline before matching lesions.
    shiftWeeks, effectMultiplier, holidayStart/End, resistanceDay, naturalHistory - what-if controls.
    overrideAction, overrideSources, overrideTargets, overrideReason - a tracking correction.

    followUpNonTarget and overrideAction are shown in plain combo boxes that the widget keeps in
    sync itself: connectGui binds a combo box to a str only with a Choice annotation, and
    without one it raises, which would stop the module from opening.
    """

    baselineVolume: vtkMRMLScalarVolumeNode
    followUpVolume: vtkMRMLScalarVolumeNode
    baselineSegmentation: vtkMRMLSegmentationNode
    followUpSegmentation: vtkMRMLSegmentationNode
    followUpDay: Annotated[float, WithinRange(1, 3650)] = 56
    patientName: str = "Patient"
    therapyLog: str = "0-:1"
    followUpNonTarget: str = "none"
    registerScans: bool = True
    shiftWeeks: Annotated[float, WithinRange(-26, 26)] = 0
    effectMultiplier: Annotated[float, WithinRange(0, 4)] = 1
    holidayStart: Annotated[float, WithinRange(0, 3650)] = 0
    holidayEnd: Annotated[float, WithinRange(0, 3650)] = 0
    resistanceDay: Annotated[float, WithinRange(0, 3650)] = 0
    naturalHistory: bool = False
    overrideAction: str = "reassign"
    overrideSources: str = ""
    overrideTargets: str = ""
    overrideReason: str = ""


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
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self._openingRun = False
        self._lastControls = None
        self._comboBoxParameters = {"followUpNonTarget": self.ui.nonTargetComboBox,
                                    "overrideAction": self.ui.overrideActionComboBox}
        for comboBox in self._comboBoxParameters.values():
            comboBox.connect("currentIndexChanged(int)", self._onComboBoxChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.buildTwinButton.connect("clicked(bool)", self.onBuildTwinButton)
        self.ui.showChartButton.connect("clicked(bool)", self.onShowChartButton)
        self.ui.overrideButton.connect("clicked(bool)", self.onOverrideButton)
        self.ui.openRunButton.connect("clicked(bool)", self.onOpenRunButton)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReportButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._restoreTwinFromScene()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        # The twin's nodes go with the scene: forget them, or the tables, the what-if sliders
        # and the correction button would keep working on deleted nodes.
        self.logic.reset()
        self._lastControls = None
        self.ui.lesionTableView.setMRMLTableNode(None)
        self.ui.recistTableView.setMRMLTableNode(None)
        self.ui.openReportButton.enabled = False
        self.ui.statusLabel.text = ""
        self.ui.whatIfLabel.text = ""

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        if self.parent.isEntered and not self._openingRun:
            self._restoreTwinFromScene()

    def _restoreTwinFromScene(self) -> None:
        """A scene saved with a twin (its state text node) gives the twin back after loading."""
        if self.logic.hasTwin():
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to restore the twin saved in the scene."),
                                                 waitCursor=True):
                summary = self.logic.restoreTwinFromScene(
                    self._parameterNode.patientName if self._parameterNode else "")
                if summary:
                    self._showResults(summary)
        except Exception:  # already shown to the user; a scene load or module switch must go on
            logging.exception("DigitalTwinTumor: restoring the twin from the scene failed")

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

    def _onComboBoxChanged(self) -> None:
        """Combo box -> parameter node (see DigitalTwinTumorParameterNode)."""
        if not self._parameterNode:
            return
        for name, comboBox in self._comboBoxParameters.items():
            if comboBox.currentIndex >= 0 and getattr(self._parameterNode, name) != comboBox.currentText:
                setattr(self._parameterNode, name, comboBox.currentText)

    def _updateComboBoxes(self) -> None:
        """Parameter node -> combo box (e.g. after a scene with other choices is loaded)."""
        for name, comboBox in self._comboBoxParameters.items():
            index = comboBox.findText(getattr(self._parameterNode, name))
            if index >= 0 and comboBox.currentIndex != index:
                comboBox.currentIndex = index

    def _checkCanApply(self, caller=None, event=None) -> None:
        node = self._parameterNode
        if node:
            self._updateComboBoxes()
        ready = bool(node and node.baselineVolume and node.followUpVolume
                     and node.baselineVolume != node.followUpVolume)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Assign both scans to timepoints") if ready else _(
            "Select two different scans")
        self.ui.buildTwinButton.enabled = bool(ready and node.baselineSegmentation and node.followUpSegmentation)
        self.ui.overrideButton.enabled = bool(node and node.overrideReason.strip() and self.logic.canOverride())
        self.ui.overrideButton.toolTip = _("Apply the correction") if self.ui.overrideButton.enabled else _(
            "Build the twin here (Build twin) and give a reason first")
        if node and self.logic.hasTwin():
            self._updateWhatIf()

    def _updateWhatIf(self) -> None:
        node = self._parameterNode
        controls = dict(shift_weeks=node.shiftWeeks, effect_multiplier=node.effectMultiplier,
                        holiday_start=node.holidayStart, holiday_end=node.holidayEnd,
                        resistance_day=node.resistanceDay, natural_history=node.naturalHistory)
        if controls == self._lastControls:
            return
        self._lastControls = controls
        try:  # runs from the parameter node observer on every slider move: no dialog, no traceback
            label = self.logic.updateWhatIf(**controls)
        except Exception as error:
            logging.exception("DigitalTwinTumor: what-if update failed")
            label = _("What-if failed for these settings: {error}").format(error=error)
        self.ui.whatIfLabel.text = label

    def _showResults(self, summary: str) -> None:
        self.ui.statusLabel.text = summary
        nodes = self.logic.twinNodes()
        if "lesions" in nodes:
            self.ui.lesionTableView.setMRMLTableNode(nodes["lesions"])
        if "recist" in nodes:
            self.ui.recistTableView.setMRMLTableNode(nodes["recist"])
        self._lastControls = None
        self._checkCanApply()  # the twin changed: correction button and what-if curve
        self.onShowChartButton()

    def onBuildTwinButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to build the twin."), waitCursor=True):
            node = self._parameterNode
            self.logic.setupTimepoints([node.baselineVolume, node.followUpVolume], [0.0, node.followUpDay],
                                       node.patientName)
            summary = self.logic.buildTwinFromNodes(
                [node.baselineVolume, node.followUpVolume], [node.baselineSegmentation, node.followUpSegmentation],
                [0.0, node.followUpDay], node.patientName, node.therapyLog, ["none", node.followUpNonTarget],
                registerScans=node.registerScans)
            self._showResults(summary)

    def onOpenRunButton(self) -> None:
        folder = self.ui.runOutputPathLineEdit.currentPath
        with slicer.util.tryWithErrorDisplay(_("Failed to open the run output."), waitCursor=True):
            self._openingRun = True  # its scene import must not restore a twin on its own
            try:
                summary = self.logic.openRunOutput(folder)
            finally:
                self._openingRun = False
            self.ui.runOutputPathLineEdit.addCurrentPathToHistory()
            self.ui.openReportButton.enabled = bool(self.logic.reportPath)
            self._showResults(summary)

    def onOpenReportButton(self) -> None:
        import qt

        if self.logic.reportPath:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(self.logic.reportPath))

    def onShowChartButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the chart."), waitCursor=False):
            role = ["sod", "waterfall", "spider", "growth"][max(self.ui.chartComboBox.currentIndex, 0)]
            chart = self.logic.twinNodes().get(role)
            if chart is None:
                if self.logic.hasTwin():
                    slicer.util.showStatusMessage(_("This twin has no {chart} chart.").format(
                        chart=self.ui.chartComboBox.currentText), 5000)
                return
            if slicer.app.layoutManager() is not None:
                slicer.modules.plots.logic().ShowChartInLayout(chart)

    def onOverrideButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to apply the correction."), waitCursor=True):
            node = self._parameterNode
            summary = self.logic.applyOverride(node.overrideAction, node.overrideSources, node.overrideTargets,
                                               node.overrideReason)
            node.overrideReason = ""
            self._showResults(summary)

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
    """Thin adapter: all work is done by DTTLib so it runs headless too. The twin's numbers live
    in MRML table / plot / text nodes (they save with the scene); the logic only keeps the
    live what-if engine, which is rebuilt from those nodes on demand."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _makeDTTLibImportable()
        self.state = None
        self.inputs = None
        self.whatif = None
        self.reportPath = ""
        self._timepointsPatientItem = None

    def reset(self) -> None:
        """Forget the twin and the timepoints (their nodes are gone with the scene)."""
        self.state = self.inputs = self.whatif = None
        self.reportPath = ""
        self._timepointsPatientItem = None

    def getParameterNode(self):
        return DigitalTwinTumorParameterNode(super().getParameterNode())

    def setupTimepoints(self, volumeNodes, days, patientName: str) -> str:
        """One patient, one study per timepoint; returns a one-line summary."""
        from DTTLib.mrml.hierarchy import organize_timepoints

        patient, studies = organize_timepoints(list(volumeNodes), [float(d) for d in days], patientName)
        # Assigning again (or Build twin after Assign timepoints) makes a new patient item; the one
        # made before is left without scans, so remove it rather than pile up empty patients.
        previous, self._timepointsPatientItem = self._timepointsPatientItem, patient
        if previous is not None and previous != patient:
            self._removeIfEmpty(previous)
        logging.info("DigitalTwinTumor: %d timepoints under patient '%s'", len(studies), patientName)
        return _("{count} timepoints assigned to '{name}'").format(count=len(studies), name=patientName)

    @staticmethod
    def _removeIfEmpty(item) -> None:
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        topLevel = vtk.vtkIdList()
        sh.GetItemChildren(sh.GetSceneItemID(), topLevel, False)
        if topLevel.IsId(item) < 0:
            return  # removed meanwhile (by the user or with its scene)
        children = vtk.vtkIdList()
        sh.GetItemChildren(item, children, True)
        if not any(sh.GetItemDataNode(children.GetId(i)) for i in range(children.GetNumberOfIds())):
            sh.RemoveItem(item, False, True)

    def hasTwin(self) -> bool:
        return self.state is not None

    def canOverride(self) -> bool:
        """Corrections need the twin's inputs: a twin built here, not one opened or restored."""
        return self.state is not None and self.inputs is not None and bool(self.inputs.identity)

    def buildTwinFromNodes(self, volumeNodes, segmentationNodes, days, patientName: str, therapyLog: str = "",
                           nonTarget=None, registerScans: bool = True) -> str:
        """Measure every segment, track lesions, evaluate RECIST, fit growth, publish the nodes."""
        from DTTLib.mrml.segmentations import get_segment_mask, list_segments
        from DTTLib.mrml.volumes import image_from_volume_node
        from DTTLib.twin.from_masks import TimepointMasks, inputs_from_masks
        from DTTLib.twin.records import parse_therapy_log

        timepoints = []
        for index, (volume, segmentation, day) in enumerate(zip(volumeNodes, segmentationNodes, days)):
            masks = {info.name: get_segment_mask(segmentation, info.segment_id, volume)
                     for info in list_segments(segmentation)}
            timepoints.append(TimepointMasks(float(day), image_from_volume_node(volume), masks,
                                             (nonTarget or [])[index] if nonTarget else "none",
                                             source=f"{volume.GetName()} / {segmentation.GetName()}"))
        inputs, _graph = inputs_from_masks(patientName, timepoints, parse_therapy_log(therapyLog),
                                           register_scans=registerScans)
        notes = self._reapplyOverrides(inputs)
        return self.buildTwin(inputs, notes)

    def _reapplyOverrides(self, inputs) -> list:
        """Rebuilding the same patient's twin re-tracks the lesions; the user's corrections (each with
        its reason) are applied again where their lesions still exist, and said when they cannot be."""
        from DTTLib.errors import DTTError
        from DTTLib.tracking.records import IdentityGraph

        if self.state is None or self.state.patient != inputs.patient or not self.state.identity:
            return []
        previous = IdentityGraph.from_dict({"overrides": self.state.identity.get("overrides", [])}).overrides
        if not previous:
            return []
        graph = IdentityGraph.from_dict(inputs.identity)
        notes = []
        for override in previous:
            try:
                graph.apply_override(override)
                notes.append(_("tracking correction '{action}' re-applied ({reason})").format(
                    action=override.action, reason=override.reason))
            except DTTError as error:
                notes.append(_("tracking correction '{action}' ({reason}) no longer applies: {error}").format(
                    action=override.action, reason=override.reason, error=error.message))
        inputs.identity = graph.to_dict()
        return notes

    def buildTwin(self, inputs, notes=()) -> str:
        from DTTLib.mrml.twin_nodes import publish_twin
        from DTTLib.twin.assemble import build_twin

        self.inputs = inputs
        self.state, self.whatif = build_twin(inputs)
        publish_twin(self.state)
        last = self.state.recist["timepoints"][-1]
        summary = _("{patient}: {n} timepoints, SOD {sod} mm, overall {overall}, best {best}").format(
            patient=inputs.patient, n=len(inputs.timepoints), sod=last["sod_mm"],
            overall=last["overall"] or "baseline", best=self.state.recist["best_overall_response"])
        return "\n".join([summary] + self.state.messages + list(notes))

    def openRunOutput(self, folder: str) -> str:
        """Load a `dtt run` output folder into the scene; the what-if sliders work on its twin."""
        from DTTLib.pipeline.open_output import open_run_output

        opened = open_run_output(folder, slicer.mrmlScene)
        self.state, self.whatif, self.inputs = opened.state, opened.whatif, None
        self.reportPath = str(opened.report) if opened.report else ""
        last = self.state.recist["timepoints"][-1] if self.state.recist else None
        summary = _("{patient}: {n} timepoints opened from {folder}").format(
            patient=self.state.patient, n=len(self.state.timepoints), folder=folder)
        if last is not None:
            summary += _(", SOD {sod} mm, overall {overall}, best {best}").format(
                sod=last["sod_mm"], overall=last["overall"] or "baseline",
                best=self.state.recist["best_overall_response"])
        return "\n".join([summary] + self.state.messages + opened.notes)

    def restoreTwinFromScene(self, preferredPatient: str = "") -> str:
        """The twin of a loaded scene, from its state text node; the what-if engine is refitted
        from the saved SOD series. Empty string when the scene holds no twin."""
        from DTTLib.mrml.twin_nodes import PATIENT, ROLE, load_twin_state
        from DTTLib.twin.assemble import whatif_from_state

        scene = slicer.mrmlScene
        patients = [node.GetAttribute(PATIENT) for node in
                    (scene.GetNthNodeByClass(i, "vtkMRMLTextNode")
                     for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTextNode")))
                    if node.GetAttribute(ROLE) == "state" and node.GetAttribute(PATIENT)]
        if not patients:
            return ""
        patient = preferredPatient if preferredPatient in patients else patients[-1]
        state = load_twin_state(patient)
        self.state, self.whatif, self.inputs, self.reportPath = state, whatif_from_state(state), None, ""
        summary = _("{patient}: {n} timepoints restored from the scene").format(
            patient=state.patient, n=len(state.timepoints))
        notes = [] if self.whatif is not None else [_("what-if is unavailable: the SOD has no usable growth fit")]
        return "\n".join([summary] + state.messages + notes)

    def twinNodes(self) -> dict:
        from DTTLib.mrml.twin_nodes import find_twin_nodes

        return find_twin_nodes(self.state.patient) if self.state else {}

    def updateWhatIf(self, shift_weeks=0.0, effect_multiplier=1.0, holiday_start=0.0, holiday_end=0.0,
                     resistance_day=0.0, natural_history=False) -> str:
        """Live: recompute the combined what-if curve and update the growth chart in place."""
        from DTTLib.mrml.twin_nodes import update_whatif_curve
        from DTTLib.twin.whatif import WhatIfControls

        if self.whatif is None:
            return _("What-if needs a growth fit of the SOD (at least 3 timepoints).")
        controls = WhatIfControls(float(shift_weeks), float(effect_multiplier),
                                  float(holiday_start) if holiday_end > holiday_start else None,
                                  float(holiday_end) if holiday_end > holiday_start else None,
                                  float(resistance_day) if resistance_day > 0 else None, bool(natural_history))
        curve = self.whatif.run_controls(controls)
        chart = self.twinNodes().get("growth")
        if chart is not None:
            update_whatif_curve(chart, curve)
        return curve.label

    def applyOverride(self, action: str, sources: str, targets: str, reason: str) -> str:
        """A tracking correction ("0:L1" keys, comma-separated); the reason is required and stored."""
        from DTTLib.tracking.records import IdentityGraph, Override

        if self.inputs is None or not self.inputs.identity:
            raise ValueError(_("Build the twin before correcting lesion identities."))

        def keys(text):
            out = []
            for part in (p.strip() for p in text.split(",") if p.strip()):
                index, _sep, lesion = part.partition(":")
                if not index.strip().isdigit() or not lesion.strip():
                    raise ValueError(_("'{part}' is not timepoint:lesion (e.g. 0:L1)").format(part=part))
                out.append((int(index), lesion.strip()))
            return out

        graph = IdentityGraph.from_dict(self.inputs.identity)
        graph.apply_override(Override(action, keys(sources), keys(targets), reason))
        self.inputs.identity = graph.to_dict()
        return self.buildTwin(self.inputs)


#
# DigitalTwinTumorTest
#


class DigitalTwinTumorTest(ScriptedLoadableModuleTest):
    """Self-test on data it makes: two synthetic scans with ellipsoid lesions become a twin."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TimepointsFromTwoScans()
        self.setUp()
        self.test_TwinFromTwoTimepoints()

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

    def test_TwinFromTwoTimepoints(self):
        """Lesion L1 (LD 30 mm) shrinks to 12 mm, L2 stays 20 mm: SOD 50 → 32 mm, −36 % = PR.
        Two timepoints cannot support a growth model: the fit reports that and the measured
        two-point rate ln(32/50)/56 per day instead."""
        import math

        import numpy as np

        self.delayDisplay("Building a two-timepoint twin")
        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.plots import chart_series
        from DTTLib.mrml.segmentations import add_segmentation_node, set_segment_mask
        from DTTLib.mrml.tables import rows_from_table_node
        from DTTLib.mrml.volumes import add_volume_node

        shape, spacing = (20, 64, 64), (1.0, 1.0, 2.0)
        k, j, i = np.indices(shape)

        def ball(ci, cj, ck, radius_mm):
            return ((i - ci) ** 2 + (j - cj) ** 2 + ((k - ck) * 2.0) ** 2) <= radius_mm ** 2

        volumes, segmentations = [], []
        for t, r1 in enumerate((15.0, 6.0)):
            lesions = {"L1": ball(20, 20, 10, r1), "L2": ball(45, 44, 10, 10.0)}
            array = np.full(shape, 100, np.int16)
            for mask in lesions.values():
                array[mask] = 300
            volume = add_volume_node(ImageVolume(array, spacing, name=f"scan t{t}"))
            segmentation = add_segmentation_node(volume, f"lesions t{t}")
            for name, mask in lesions.items():
                set_segment_mask(segmentation, mask.astype(np.uint8), name, volume)
            volumes.append(volume)
            segmentations.append(segmentation)

        logic = DigitalTwinTumorLogic()
        summary = logic.buildTwinFromNodes(volumes, segmentations, [0, 56], "Synthetic twin", "0-:1",
                                           ["none", "none"], registerScans=False)
        state = logic.state
        lds = {(row["timepoint"], row["lesion"]): row["ld_mm"] for row in state.lesion_table}
        self.assertAlmostEqual(lds[(0, "L1")], 30.0, delta=1.5)
        self.assertAlmostEqual(lds[(1, "L1")], 12.0, delta=1.5)
        self.assertAlmostEqual(lds[(1, "L2")], 20.0, delta=1.5)
        sod0 = lds[(0, "L1")] + lds[(0, "L2")]
        sod1 = lds[(1, "L1")] + lds[(1, "L2")]
        last = state.recist["timepoints"][1]
        self.assertAlmostEqual(last["sod_mm"], sod1, places=3)
        self.assertAlmostEqual(last["change_from_baseline_pct"], 100 * (sod1 - sod0) / sod0, places=2)
        self.assertEqual(last["overall"], "PR")
        self.assertIn("overall PR", summary)
        sod = state.series("SOD")
        self.assertEqual(sod.status, "too few points")
        self.assertAlmostEqual(sod.two_point_rate_per_day, math.log(sod1 / sod0) / 56, places=9)
        self.assertIsNone(logic.whatif)
        self.assertIn("at least 3", logic.updateWhatIf(shift_weeks=2))
        nodes = logic.twinNodes()
        self.assertTrue({"lesions", "recist", "sod", "waterfall", "spider", "growth", "state"} <= set(nodes))
        self.assertEqual(rows_from_table_node(nodes["recist"])[1]["overall"], "PR")
        waterfall = chart_series(nodes["waterfall"])[0]
        self.assertEqual(waterfall["labels"][-1], "L1")
        self.assertAlmostEqual(waterfall["y"][-1], 100 * (lds[(1, "L1")] - lds[(0, "L1")]) / lds[(0, "L1")], places=3)
        with self.assertRaises(Exception):
            logic.applyOverride("new", "", "1:L2", "")  # a correction without a reason is refused
        logic.applyOverride("new", "", "1:L2", "test: L2 at day 56 is a different lesion")
        self.assertEqual(logic.state.recist["timepoints"][1]["overall"], "PD")  # new lesion
        self.assertEqual(logic.state.identity["overrides"][0]["reason"], "test: L2 at day 56 is a different lesion")
        self.delayDisplay("Test passed")
