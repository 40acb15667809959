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

from DigitalTwinTumorLib.LesionAnatomy import LesionAnatomyLogic, LesionAnatomyWidget
from DigitalTwinTumorLib.RunOutput import RunOutputLogic, RunOutputWidget
from DigitalTwinTumorLib.Timepoints import TimepointsLogic, TimepointsTest, TimepointsWidget


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
    timepointVolumes, timepointSegmentations, timepointDays, timepointNonTargets,
    timepointNonTargetFurtherIncreases, timepointNewLesions -
        one entry per timepoint, baseline first: its scan, its lesion segmentation (one segment per
        lesion), days from baseline (the baseline is day 0), its RECIST non-target assessment
        (NON_TARGET_CHOICES in DigitalTwinTumorLib/Common.py), for iRECIST whether that non-target
        disease grew further since the last visit (FURTHER_INCREASE_CHOICES) and whether it has new
        lesions (NEW_LESION_CHOICES).
        The timepoints table edits them; the volumes and segmentations are node references, so they
        follow the nodes when a scene is saved and loaded again. A scene saved before the further
        increase existed has no such list: the wrapper reads it as empty and every timepoint is
        "not_assessed" (timepointsFromLists pads it).
    lesionAnatomy - JSON {lesion id: {"organ": text, "nodal": bool}}: the organ and nodal status the
        user set in the lesion organ table. A lesion not listed takes them from its segment (the
        DTT.Organ / DTT.Nodal segment tags, else the anatomic region of its terminology).
    patientName - name of the patient item in the subject hierarchy (pseudonymous).
    therapyLog - "start-end:level; ..." in days from baseline (empty end = ongoing).
    registerScans - register each scan to the one before it, then match lesions.
    immunotherapy, confirmationRequired, minSdDays - RECIST settings: iRECIST for immunotherapy, PR/CR
        only when confirmed at a later scan, and the minimum days from baseline for stable disease.
    shiftWeeks, effectMultiplier, holidayStart/End, resistanceDay, naturalHistory - what-if controls.
    overrideAction, overrideSources, overrideTargets, overrideReason - a tracking correction.

    The timepoint lists, lesionAnatomy and overrideAction are edited by widgets that the widget keeps
    in sync itself: connectGui binds a combo box to a str only with a Choice annotation (without one
    it raises, which would stop the module from opening), and it binds no tables.
    """

    timepointVolumes: list[vtkMRMLScalarVolumeNode]
    timepointSegmentations: list[vtkMRMLSegmentationNode]
    timepointDays: list[float]
    timepointNonTargets: list[str]
    timepointNonTargetFurtherIncreases: list[str]
    timepointNewLesions: list[str]
    lesionAnatomy: str = "{}"
    patientName: str = "Patient"
    therapyLog: str = "0-:1"
    registerScans: bool = True
    immunotherapy: bool = False
    confirmationRequired: bool = False
    minSdDays: Annotated[float, WithinRange(0, 365)] = 42
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


class DigitalTwinTumorWidget(TimepointsWidget, LesionAnatomyWidget, RunOutputWidget, ScriptedLoadableModuleWidget,
                             VTKObservationMixin):
    # columns of the timepoints and lesion organ tables (their headers are in the .ui)

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timepointWidgets = []  # one dict of cell widgets per row of the timepoints table
        self._updatingTimepoints = False
        self._anatomyShown = None  # (segmentation node ids, lesionAnatomy) the organ table shows
        self._buildJob = None  # the twin build running in a worker thread (see onBuildTwinButton)
        self._buildTimer = None

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
        self._comboBoxParameters = {"overrideAction": self.ui.overrideActionComboBox}
        for comboBox in self._comboBoxParameters.values():
            comboBox.connect("currentIndexChanged(int)", self._onComboBoxChanged)
        self.ui.addTimepointButton.connect("clicked(bool)", self.onAddTimepointButton)
        self.ui.removeTimepointButton.connect("clicked(bool)", self.onRemoveTimepointButton)
        self.ui.refreshLesionsButton.connect("clicked(bool)", self.onRefreshLesionsButton)
        self.ui.lesionAnatomyTableWidget.connect("cellChanged(int,int)", self._onLesionAnatomyEdited)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.buildTwinButton.connect("clicked(bool)", self.onBuildTwinButton)
        self.ui.cancelBuildButton.connect("clicked(bool)", self.onCancelBuildButton)
        self._showBuilding(False)
        self.ui.showChartButton.connect("clicked(bool)", self.onShowChartButton)
        self.ui.overrideButton.connect("clicked(bool)", self.onOverrideButton)
        self.ui.openRunButton.connect("clicked(bool)", self.onOpenRunButton)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReportButton)
        self.initializeParameterNode()

    #: cleanup waits this long for a cancelled build to reach its next step boundary
    CLEANUP_WAIT_S = 60.0

    def cleanup(self) -> None:
        # A build still running is cancelled and its result dropped: the widget is going away. Its
        # thread is waited for (it stops at the end of the current step), so that Slicer never exits
        # with the worker inside SimpleITK or SciPy.
        job = self._buildJob
        self._cancelBuild(ignoreResult=True)
        if self._buildTimer is not None:
            self._buildTimer.stop()
            self._buildTimer = None
        self._buildJob = None
        if job is not None and not job.wait(self.CLEANUP_WAIT_S):
            logging.warning("DigitalTwinTumor: the cancelled twin build is still running")
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
        # A build still running would publish into the next scene: cancel it and drop its result.
        self._cancelBuild(ignoreResult=True)
        self.setParameterNode(None)
        # The twin's nodes go with the scene: forget them, or the tables, the what-if sliders
        # and the correction button would keep working on deleted nodes.
        self.logic.reset()
        self._lastControls = None
        self.ui.lesionTableView.setMRMLTableNode(None)
        self.ui.recistTableView.setMRMLTableNode(None)
        self.ui.lesionAnatomyTableWidget.setRowCount(0)
        self._anatomyShown = None
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
        node = self.logic.getParameterNode()
        if len(node.timepointDays) < 2:
            # a new parameter node, or one saved by the two-scan version of this module
            self._writeTimepoints(self.logic.defaultTimepoints(node.parameterNode), node)
        self.setParameterNode(node)

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

    # -- timepoints table: a row per timepoint, each cell a widget; the parameter node holds the values

    # -- lesion organ table: lesion id | organ | nodal, from the segments and the user's edits

    def _checkCanApply(self, caller=None, event=None) -> None:
        node = self._parameterNode
        if node:
            self._updateComboBoxes()
            self._updateTimepointsTable()
            try:  # runs from the parameter node observer: no dialog, no traceback
                self._updateLesionAnatomyTable()
            except Exception:
                logging.exception("DigitalTwinTumor: reading the lesion segments failed")
        problem = self.logic.timepointsProblem(self._timepoints()) if node else _("No parameter node")
        self.ui.applyButton.enabled = not problem
        self.ui.applyButton.toolTip = problem or _("Assign the scans to timepoints")
        building = self._buildJob is not None
        if building:  # one build at a time; the timepoints are those of the running build
            self.ui.applyButton.enabled = False
            self.ui.applyButton.toolTip = _("A twin is being built")
        buildProblem = problem or (self.logic.timepointsProblem(self._timepoints(), segmentations=True))
        self.ui.buildTwinButton.enabled = not buildProblem and not building
        self.ui.buildTwinButton.toolTip = (_("A twin is being built: wait for it or cancel it") if building
                                           else buildProblem or _("Measure lesions, track them, evaluate RECIST, "
                                                                  "fit growth (in the background: Cancel stops it)"))
        self.ui.removeTimepointButton.enabled = bool(node and len(node.timepointDays) > 2)
        self.ui.overrideButton.enabled = bool(node and node.overrideReason.strip() and self.logic.canOverride()
                                              and not building)
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
        """Build the twin: the scans and masks are read here (GUI thread), registration, tracking,
        RECIST and growth fits run in a worker thread (progress, Cancel), and the result is written
        into the scene back on the GUI thread. A cancelled or failed build leaves the scene as it was."""
        if self._buildJob is not None:
            return
        failure = _("Failed to build the twin.")
        node = self._parameterNode
        timepoints = self._timepoints()
        volumes = [t["volume"] for t in timepoints]
        segmentations = [t["segmentation"] for t in timepoints]
        days = [t["day"] for t in timepoints]
        patientName = node.patientName
        try:
            import qt

            slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
            try:
                request = self.logic.readTwinInputs(
                    volumes, segmentations, days, patientName, node.therapyLog, [t["nonTarget"] for t in timepoints],
                    registerScans=node.registerScans,
                    newLesions=[{"yes": True, "no": False}.get(t["newLesions"]) for t in timepoints],
                    nonTargetFurtherIncrease=[{"yes": True, "no": False}.get(t["furtherIncrease"])
                                              for t in timepoints],
                    lesionAnatomy=self.logic.parseLesionAnatomy(node.lesionAnatomy),
                    immunotherapy=node.immunotherapy, confirmationRequired=node.confirmationRequired,
                    minSdDays=node.minSdDays)
            finally:
                slicer.app.restoreOverrideCursor()
        except Exception as error:  # noqa: BLE001 - shown as problem and fix, not as a traceback
            self._showBuildError(failure, error)
            return

        def finish(computed):
            try:
                if not all(slicer.mrmlScene.IsNodePresent(n) for n in volumes + segmentations):
                    raise ValueError(_("A scan or segmentation of the timepoints was removed while the twin "
                                       "was being built: select the timepoints again and build the twin again."))
                self.logic.setupTimepoints(volumes, days, patientName)
                summary = self.logic.publishTwin(computed)
            except Exception as error:  # noqa: BLE001
                self._showBuildError(failure, error)
                return
            try:  # the lesions as measured, segments edited meanwhile; runs from a timer: no dialog
                self._updateLesionAnatomyTable(force=True)
            except Exception:
                logging.exception("DigitalTwinTumor: reading the lesion segments failed")
            self._showResults(summary)

        self._runBuild(request, finish, failure)

    def _runBuild(self, request, finish, failure: str, intervalMs: int = 100) -> None:
        """DigitalTwinTumorLogic.computeTwin in a worker thread (no MRML there; DTT Segmentation's
        pattern): progress and cancel through DTTLib.background.BackgroundJob, which a timer on the GUI
        thread polls; ``finish(computed)`` runs on the GUI thread, unless the build was cancelled,
        failed or is to be ignored (scene closed, module cleaned up)."""
        import qt

        from DTTLib.background import BackgroundJob

        job = BackgroundJob(lambda progress, should_cancel: DigitalTwinTumorLogic.computeTwin(
            request, progress=progress, should_cancel=should_cancel), "DigitalTwinTumor twin build")
        self._buildJob = job
        self._showBuilding(True)
        job.start()
        timer = qt.QTimer()
        timer.setInterval(intervalMs)

        def poll():
            if not job.ignored:
                self.ui.buildProgressBar.maximum = max(job.total, 1)
                self.ui.buildProgressBar.value = job.done
                if not job.cancel_requested:
                    self.ui.statusLabel.text = self.logic.progressText(job.step)
            if job.running:
                return
            timer.stop()
            if self._buildTimer is timer:
                self._buildTimer = None
            if self._buildJob is job:
                self._buildJob = None
                self._showBuilding(False)
            if job.ignored:
                logging.info("DigitalTwinTumor: a twin build ended after its scene was closed; result dropped")
                return
            if job.error is not None:
                logging.error("DigitalTwinTumor: building the twin failed\n%s", job.traceback)
                self._showBuildError(failure, job.error, logged=True)
                return
            # Cancel after computeTwin's last check still returns a full twin: the user asked for no
            # change to the scene, so it is dropped too
            if job.cancel_requested or job.result is None or job.result.cancelled:
                self.ui.statusLabel.text = _("Build cancelled: the scene is unchanged.")
                return
            finish(job.result)

        timer.connect("timeout()", poll)
        self._buildTimer = timer
        timer.start()

    def onCancelBuildButton(self) -> None:
        if self._buildJob is not None and not self._buildJob.cancel_requested:
            self._cancelBuild()
            self.ui.statusLabel.text = _("Cancelling: the build stops after the current step…")

    def _cancelBuild(self, ignoreResult: bool = False) -> None:
        """Ask the running build to stop at its next step; ``ignoreResult`` also drops whatever it returns."""
        job = self._buildJob
        if job is None:
            return
        job.cancel(ignore_result=ignoreResult)
        if hasattr(self, "ui"):
            self.ui.cancelBuildButton.enabled = False

    def _showBuilding(self, building: bool) -> None:
        self.ui.buildProgressBar.visible = building
        self.ui.buildProgressBar.value = 0
        self.ui.cancelBuildButton.enabled = building
        self.ui.cancelBuildButton.visible = building
        self.ui.openRunButton.enabled = not building
        self._checkCanApply()

    def _showBuildError(self, failure: str, error, logged: bool = False) -> None:
        """DTTLib's problem and fix in an error popup, no traceback (that goes to the log)."""
        if not logged:
            logging.error("DigitalTwinTumor: %s", failure, exc_info=(type(error), error, error.__traceback__))
        self.ui.statusLabel.text = ""
        slicer.util.errorDisplay(self.logic.errorText(failure, error))

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
            timepoints = self._timepoints()
            summary = self.logic.setupTimepoints([t["volume"] for t in timepoints], [t["day"] for t in timepoints],
                                                 node.patientName)
            self.ui.statusLabel.text = summary


#
# DigitalTwinTumorLogic
#


class DigitalTwinTumorLogic(TimepointsLogic, LesionAnatomyLogic, RunOutputLogic, ScriptedLoadableModuleLogic):
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

    def hasTwin(self) -> bool:
        return self.state is not None

    def canOverride(self) -> bool:
        """Corrections need the twin's inputs: a twin built here, not one opened or restored."""
        return self.state is not None and self.inputs is not None and bool(self.inputs.identity)

    # -- timepoints and lesion anatomy (organ, nodal) as the widget edits them

    # The anatomy logic lives in DTTLib.mrml.lesions; these names stay for the widget and the self-test.

    def buildTwinFromNodes(self, volumeNodes, segmentationNodes, days, patientName: str, therapyLog: str = "",
                           nonTarget=None, registerScans: bool = True, newLesions=None, lesionAnatomy=None,
                           immunotherapy: bool = False, confirmationRequired: bool = False,
                           minSdDays: float = 42.0, nonTargetFurtherIncrease=None) -> str:
        """Measure every lesion segment, track lesions, evaluate RECIST, fit growth, publish the nodes.

        Any number of timepoints, ordered by day (the first is the baseline). Per timepoint:
        ``nonTarget`` its non-target assessment, ``newLesions`` True / False as the reader says or
        None as tracking finds, ``nonTargetFurtherIncrease`` True / False as the reader says or None
        when not assessed (iRECIST: only True confirms a non-target iUPD as iCPD; see
        DTTLib.response.irecist). ``lesionAnatomy`` ({lesion id: {"organ", "nodal"}}) overrides the
        organ and nodal status the segments carry (see lesionAnatomy). ``immunotherapy`` selects
        iRECIST; ``confirmationRequired`` and ``minSdDays`` are the RECIST 1.1 confirmation and
        stable-disease duration rules.

        Synchronous: readTwinInputs, computeTwin, publishTwin in a row. The widget runs the same
        three steps with computeTwin in a worker thread."""
        request = self.readTwinInputs(volumeNodes, segmentationNodes, days, patientName, therapyLog, nonTarget,
                                      registerScans, newLesions, lesionAnatomy, immunotherapy,
                                      confirmationRequired, minSdDays, nonTargetFurtherIncrease)
        return self.publishTwin(self.computeTwin(request))

    def readTwinInputs(self, volumeNodes, segmentationNodes, days, patientName: str, therapyLog: str = "",
                       nonTarget=None, registerScans: bool = True, newLesions=None, lesionAnatomy=None,
                       immunotherapy: bool = False, confirmationRequired: bool = False,
                       minSdDays: float = 42.0, nonTargetFurtherIncrease=None):
        """GUI thread: check the timepoints and copy what the twin is computed from out of the scene
        (each scan's voxels, each lesion segment's mask, organs, settings, the corrections of this
        patient's current twin). The request holds numpy copies and no MRML node, so computeTwin
        can run on it in a worker thread while the scene changes. Arguments as buildTwinFromNodes."""
        from DTTLib.mrml.segmentations import get_segment_mask
        from DTTLib.mrml.volumes import image_from_volume_node
        from DTTLib.tracking.records import IdentityGraph
        from DTTLib.twin.from_masks import TimepointMasks
        from DTTLib.twin.records import parse_therapy_log

        count = len(volumeNodes)
        nonTarget = list(nonTarget) if nonTarget else ["none"] * count
        newLesions = list(newLesions) if newLesions else [None] * count
        further = list(nonTargetFurtherIncrease) if nonTargetFurtherIncrease else [None] * count
        if not len(segmentationNodes) == len(days) == len(nonTarget) == len(newLesions) == len(further) == count:
            raise ValueError(_("Give every timepoint a scan, a lesion segmentation, a day, a non-target "
                               "assessment, its further increase and a new-lesion flag."))
        problem = self.timepointsProblem(
            [{"volume": v, "segmentation": s, "day": d} for v, s, d in zip(volumeNodes, segmentationNodes, days)],
            segmentations=True, minimum=1)
        if problem:
            raise ValueError(problem)
        therapy = parse_therapy_log(therapyLog)
        order = sorted(range(count), key=lambda index: float(days[index]))
        anatomy = self.lesionAnatomy([segmentationNodes[index] for index in order], lesionAnatomy)
        timepoints = []
        for index in order:
            volume, segmentation = volumeNodes[index], segmentationNodes[index]
            masks, organs, nodal = {}, {}, set()
            for segmentId, segment in self._lesionSegments(segmentation):
                name = segment.GetName()
                masks[name] = get_segment_mask(segmentation, segmentId, volume)
                lesion = anatomy.get(self.lesionIdOfSegment(name), {})
                organs[name] = lesion.get("organ") or ("lymph node" if lesion.get("nodal") else "unspecified")
                if lesion.get("nodal"):
                    nodal.add(name)
            timepoints.append(TimepointMasks(float(days[index]), image_from_volume_node(volume), masks,
                                             nonTarget[index], organs, nodal,
                                             source=f"{volume.GetName()} / {segmentation.GetName()}",
                                             non_target_further_increase=(None if further[index] is None
                                                                          else bool(further[index]))))
        previous = []
        if self.state is not None and self.state.patient == patientName and self.state.identity:
            previous = IdentityGraph.from_dict({"overrides": self.state.identity.get("overrides", [])}).overrides
        from DTTLib.twin.build_job import TwinBuildRequest

        return TwinBuildRequest(patientName, timepoints, therapy, [newLesions[index] for index in order],
                                bool(registerScans), bool(immunotherapy), bool(confirmationRequired),
                                float(minSdDays), previous)

    @staticmethod
    def computeTwin(request, progress=None, should_cancel=None):
        """The long part of building a twin (DTTLib.twin.build_job.compute_twin): pure, safe in a
        worker thread; ``progress(done, total, step)``, ``should_cancel()`` between steps."""
        from DTTLib.twin.build_job import compute_twin

        return compute_twin(request, progress, should_cancel)

    @staticmethod
    def progressText(step) -> str:
        """GUI thread: the words for a computeTwin progress step."""
        kind = step[0] if step else ""
        if kind == "register":
            return _("Registering scan {later} to scan {earlier} (pair {pair} of {pairs})…").format(
                later=step[1], earlier=step[1] - 1, pair=step[1], pairs=step[2])
        if kind == "track":
            return _("Measuring and tracking the lesions…")
        if kind == "fit":
            return _("RECIST and growth fits…")
        if kind == "done":
            return _("Publishing the twin…")
        return _("Building the twin…")

    @staticmethod
    def errorText(failure: str, error) -> str:
        """The message for a failed build: DTTLib's errors say the problem and the fix; no traceback."""
        problem = getattr(error, "problem", None)
        if problem is None:
            return f"{failure}\n\n{error}"
        fix = getattr(error, "fix", None)
        return f"{failure}\n\n{problem}" + ("\n\n" + _("Fix: {fix}").format(fix=fix) if fix else "")

    @staticmethod
    def overrideNotes(outcomes) -> list:
        notes = []
        for override, error in outcomes:
            if error:
                notes.append(_("tracking correction '{action}' ({reason}) no longer applies: {error}").format(
                    action=override.action, reason=override.reason, error=error))
            else:
                notes.append(_("tracking correction '{action}' re-applied ({reason})").format(
                    action=override.action, reason=override.reason))
        return notes

    def buildTwin(self, inputs, notes=()) -> str:
        """The twin of ready inputs (e.g. after a correction), published; returns the summary."""
        from DTTLib.twin.assemble import build_twin
        from DTTLib.twin.build_job import ComputedTwin

        state, whatif = build_twin(inputs)
        return self.publishTwin(ComputedTwin(inputs, state, whatif), notes)

    def publishTwin(self, computed, notes=()) -> str:
        """GUI thread: computeTwin's result into the scene (tables, charts, state text node), all or
        nothing: when writing fails the nodes written so far are removed and the previous twin of
        the patient, with its nodes, stays. Returns the summary."""
        from DTTLib.mrml.twin_nodes import PATIENT, find_twin_nodes, publish_twin, remove_twin_nodes

        if computed.cancelled:
            raise ValueError(_("The build was cancelled: there is no twin to publish."))
        scene = slicer.mrmlScene
        patient = computed.state.patient
        before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
        # publish_twin replaces the patient's nodes; set the current ones aside until the new ones are written
        aside = f"DTT.BeingReplaced:{patient}"
        previous = list(find_twin_nodes(patient).values())
        for node in previous:
            node.SetAttribute(PATIENT, aside)
        try:
            publish_twin(computed.state)
        except Exception:
            added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
            for node in reversed([n for n in added if n.GetID() not in before]):
                if scene.IsNodePresent(node):
                    scene.RemoveNode(node)
            for node in previous:
                node.SetAttribute(PATIENT, patient)
            raise
        remove_twin_nodes(aside)
        self.inputs, self.state, self.whatif = computed.inputs, computed.state, computed.whatif
        last = self.state.recist["timepoints"][-1]
        summary = _("{patient}: {n} timepoints ({criteria}), SOD {sod} mm, overall {overall}, best {best}").format(
            patient=patient, n=len(computed.inputs.timepoints), criteria=self.state.criteria, sod=last["sod_mm"],
            overall=last["overall"] or "baseline", best=self.state.recist["best_overall_response"])
        lines = self.withRecistWarnings(summary, self.state)
        sod = self.state.series("SOD")
        if sod is not None and sod.status == "ok" and sod.selected:
            lines.append(_("SOD growth: fitted, {model} weighs most (Akaike weight {weight:.0%})").format(
                model=sod.selected, weight=sod.models[sod.selected]["akaike_weight"]))
        return "\n".join(lines + self.state.messages + self.overrideNotes(computed.overrides) + list(notes))

    @staticmethod
    def withRecistWarnings(summary: str, state) -> list:
        """The summary line with the count of the RECIST engine's warnings, then each warning: they
        bear on the response that line states, so they come first and the status line shows them."""
        from DTTLib.response.display import recist_warnings, warning_count, warning_lines

        warnings = recist_warnings(state.recist)
        if not warnings:
            return [summary]
        counted = _("{summary} — ⚠ {count}, listed below").format(
            summary=summary, count=warning_count(len(warnings), state.criteria))
        return [counted] + warning_lines(warnings, state.criteria, bullet="  • ")

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
        return "\n".join(self.withRecistWarnings(summary, state) + state.messages + notes)

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


class DigitalTwinTumorTest(TimepointsTest, ScriptedLoadableModuleTest):
    """Self-test on data it makes: synthetic scans with spherical lesions become a twin, from two
    timepoints (a response, no growth model yet) and from three (a response and a growth fit)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    @staticmethod
    def newLogic():
        """A fresh logic for a test (the feature parts' tests in DigitalTwinTumorLib use it)."""
        return DigitalTwinTumorLogic()

    def runTest(self):
        self.setUp()
        self.test_TimepointsFromTwoScans()
        self.setUp()
        self.test_TwinFromTwoTimepoints()
        self.setUp()
        self.test_TwinFromThreeTimepoints()
        self.setUp()
        self.test_NonTargetFurtherIncrease()
        self.setUp()
        self.test_RecistWarningsReachTheSummary()
        self.setUp()
        self.test_CancelledBuildLeavesTheSceneUntouched()
        self.setUp()
        self.test_FailedPublishLeavesNoHalfWrittenNodes()

    @staticmethod
    def _syntheticScans(lesionRadii, segmentName="{lesion}"):
        """One 64 x 64 x 20 scan (1 x 1 x 2 mm) and lesion segmentation per timepoint; lesionRadii[t] maps
        a lesion id to (i, j, k) centre and radius in mm. Returns (volumes, segmentations)."""
        import numpy as np

        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.segmentations import add_segmentation_node, set_segment_mask
        from DTTLib.mrml.volumes import add_volume_node

        shape, spacing = (20, 64, 64), (1.0, 1.0, 2.0)
        k, j, i = np.indices(shape)
        volumes, segmentations = [], []
        for t, lesions in enumerate(lesionRadii):
            masks = {lesion: ((i - ci) ** 2 + (j - cj) ** 2 + ((k - ck) * 2.0) ** 2) <= radius ** 2
                     for lesion, ((ci, cj, ck), radius) in lesions.items()}
            array = np.full(shape, 100, np.int16)
            for mask in masks.values():
                array[mask] = 300
            volume = add_volume_node(ImageVolume(array, spacing, name=f"scan t{t}"))
            segmentation = add_segmentation_node(volume, f"lesions t{t}")
            for lesion, mask in masks.items():
                set_segment_mask(segmentation, mask.astype(np.uint8), segmentName.format(lesion=lesion, t=t), volume)
            volumes.append(volume)
            segmentations.append(segmentation)
        return volumes, segmentations

    def test_TwinFromTwoTimepoints(self):
        """Lesion L1 (LD 30 mm) shrinks to 12 mm, L2 stays 20 mm: SOD 50 → 32 mm, −36 % = PR.
        Two timepoints cannot support a growth model: the fit reports that and the measured
        two-point rate ln(32/50)/56 per day instead."""
        import math

        self.delayDisplay("Building a two-timepoint twin")
        from DTTLib.mrml.plots import chart_series
        from DTTLib.mrml.tables import rows_from_table_node

        volumes, segmentations = self._syntheticScans(
            [{"L1": ((20, 20, 10), r1), "L2": ((45, 44, 10), 10.0)} for r1 in (15.0, 6.0)])

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
        # the RECIST settings reach the twin: iRECIST, and the reader's new-lesion call
        logic.buildTwinFromNodes(volumes, segmentations, [0, 56], "Synthetic twin", "0-:1", ["none", "NE"],
                                 registerScans=False, newLesions=[None, True], immunotherapy=True,
                                 confirmationRequired=True, minSdDays=28)
        inputs = logic.inputs
        self.assertEqual((inputs.immunotherapy, inputs.confirmation_required, inputs.min_sd_days), (True, True, 28.0))
        self.assertEqual((inputs.timepoints[1].non_target, inputs.timepoints[1].new_lesions), ("NE", True))
        self.assertEqual(logic.state.criteria, "iRECIST")
        self.assertEqual(logic.state.recist["timepoints"][1]["overall"], "iUPD")
        self.delayDisplay("Test passed")

    def test_TwinFromThreeTimepoints(self):
        """Three lesions over days 0, 42, 84, named as DTT Segmentation names them ("L1 @ t0"), their
        organs read from the segments: L1 liver by the DTT.Organ / DTT.Nodal tags DTT Segmentation
        writes, L2 liver by its terminology's
        anatomic region, N1 a lymph node by its terminology type (nodal: counted by its short axis).
        The user then puts L2 in the lung. All three are targets (with every lesion in one unnamed
        organ RECIST would allow two). SOD -17 % at day 42 (SD), -40 % at day 84 (PR); three points
        give a growth fit and the live what-if. An nnU-Net proposal not yet accepted is never counted
        (else day 42 would be PD: a new lesion)."""
        self.delayDisplay("Building a three-timepoint twin")
        from DTTLib.mrml.lesions import lesion_segment_name, write_lesion_anatomy
        from DTTLib.mrml.segmentations import LESION_TERMINOLOGY, resolve_segment_id, set_segment_mask
        from DTTLib.mrml.tables import rows_from_table_node
        from DTTLib.segmentation.nnunet_scene import PROPOSAL_TAG, proposal_segment_name

        centres = {"L1": (18, 18, 10), "L2": (46, 18, 10), "N1": (32, 48, 10)}
        radii = [{"L1": 15.0, "L2": 10.0, "N1": 9.0}, {"L1": 11.0, "L2": 9.0, "N1": 8.0},
                 {"L1": 6.0, "L2": 7.0, "N1": 7.0}]
        volumes, segmentations = self._syntheticScans(
            [{lesion: (centres[lesion], r) for lesion, r in tp.items()} for tp in radii],
            lesion_segment_name("{lesion}", "t{t}"))
        liver = LESION_TERMINOLOGY.replace("~^^~^^", "~SCT^10200004^Liver~^^")
        node = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
                "~SCT^59441001^Lymph node~^^~Anatomic codes - DICOM master list~^^~^^")
        for t, segmentation in enumerate(segmentations):
            segments = segmentation.GetSegmentation()
            write_lesion_anatomy(segments.GetSegment(resolve_segment_id(segmentation, f"L1 @ t{t}")), "liver", False)
            segments.GetSegment(resolve_segment_id(segmentation, f"L2 @ t{t}")).SetTag("TerminologyEntry", liver)
            segments.GetSegment(resolve_segment_id(segmentation, f"N1 @ t{t}")).SetTag("TerminologyEntry", node)
        proposal = set_segment_mask(segmentations[1], self._syntheticMask(volumes[1], (32, 32, 10), 6.0),
                                    proposal_segment_name("P1", "t1"), volumes[1])
        segmentations[1].GetSegmentation().GetSegment(proposal).SetTag(PROPOSAL_TAG, "0.800")

        logic = DigitalTwinTumorLogic()
        described = {lesion: (a["organ"], a["nodal"], a["origin"])
                     for lesion, a in logic.lesionAnatomy(segmentations).items()}
        self.assertEqual(described, {"L1": ("liver", False, "tag"), "L2": ("Liver", False, "terminology"),
                                     "N1": ("lymph node", True, "terminology")})  # the proposal is no lesion
        names = ("L1 @ t2", "Liver met 3 @ 2024-05-01", "Segment_1")
        self.assertEqual([logic.lesionIdOfSegment(name) for name in names], ["L1", "Liver met 3", "Segment_1"])
        userSet = logic.parseLesionAnatomy(logic.setLesionAnatomy("{}", "L2", " lung ", False))
        self.assertEqual(logic.lesionAnatomy(segmentations, userSet)["L2"],
                         {"organ": "lung", "nodal": False, "origin": "user"})
        summary = logic.buildTwinFromNodes(volumes, segmentations, [0, 42, 84], "Three timepoints", "0-:1",
                                           ["none"] * 3, registerScans=False, lesionAnatomy=userSet)
        state = logic.state
        self.assertEqual(len(state.recist["targets"]), 3)
        rows = {(row["timepoint"], row["lesion"]): row for row in state.lesion_table}
        self.assertEqual(len(rows), 9)  # three lesions at three timepoints, no proposal
        self.assertEqual([rows[(0, f"{x} @ t0")]["organ"] for x in ("L1", "L2", "N1")],
                         ["liver", "lung", "lymph node"])
        self.assertEqual([rows[(0, f"{x} @ t0")]["nodal"] for x in ("L1", "L2", "N1")], [False, False, True])
        timepoints = state.recist["timepoints"]
        for t in range(3):  # a node counts by its short axis
            size = {x: rows[(t, f"{x} @ t{t}")]["sa_mm" if x == "N1" else "ld_mm"] for x in centres}
            self.assertAlmostEqual(timepoints[t]["sod_mm"], sum(size.values()), places=3)
        self.assertTrue(-30 < timepoints[1]["change_from_baseline_pct"] < -10)
        self.assertLess(timepoints[2]["change_from_baseline_pct"], -35)
        self.assertEqual([tp["overall"] for tp in timepoints[1:]], ["SD", "PR"])
        self.assertEqual(state.recist["best_overall_response"], "PR")
        self.assertEqual(state.criteria, "RECIST 1.1")
        self.assertIn("overall PR", summary)
        self.assertEqual([row["overall"] for row in rows_from_table_node(logic.twinNodes()["recist"])],
                         ["baseline", "SD", "PR"])
        sod = state.series("SOD")
        self.assertEqual(sod.status, "ok")  # fitted
        self.assertIn(sod.selected, sod.models)
        self.assertAlmostEqual(sum(m["akaike_weight"] for m in sod.models.values()), 1.0, places=6)
        self.assertIsNotNone(sod.fit)
        self.assertIn("SOD growth: fitted", summary)
        self.assertIsNotNone(logic.whatif)
        self.assertIn("hypothesis", logic.updateWhatIf(shift_weeks=4).lower())
        self.delayDisplay("Test passed")

    def test_NonTargetFurtherIncrease(self):
        """iRECIST, targets unchanged (L1 20 mm): the non-target disease is PD at day 56 (iUPD) and PD
        again at day 112. Only the reader's "yes, it grew further" confirms iCPD; "no" keeps iUPD, and
        so does "not assessed" (PD again is no evidence of growth since day 56), whose reason says so.
        A scene saved before the further-increase column loads with every row "not assessed"."""
        self.delayDisplay("Non-target further increase under iRECIST")
        volumes, segmentations = self._syntheticScans([{"L1": ((32, 32, 10), 10.0)}] * 3)
        logic = DigitalTwinTumorLogic()
        overall = {}
        for label, flag in (("yes", True), ("no", False), ("not assessed", None)):
            logic.buildTwinFromNodes(volumes, segmentations, [0, 56, 112], "Further increase", "0-:1",
                                     ["nonCR_nonPD", "PD", "PD"], registerScans=False, immunotherapy=True,
                                     nonTargetFurtherIncrease=[None, None, flag])
            self.assertEqual(logic.inputs.timepoints[2].non_target_further_increase, flag)
            overall[label] = [(tp["overall"], tp["overall_reason"]) for tp in logic.state.recist["timepoints"][1:]]
        self.assertEqual([o for o, _reason in overall["yes"]], ["iUPD", "iCPD"])
        self.assertEqual([o for o, _reason in overall["no"]], ["iUPD", "iUPD"])
        self.assertEqual([o for o, _reason in overall["not assessed"]], ["iUPD", "iUPD"])
        self.assertIn("further increase not assessed", overall["not assessed"][1][1])
        self.assertNotIn("not assessed", overall["no"][1][1])
        # the widget's worker path: the same request, computed apart, gives the same call
        request = logic.readTwinInputs(volumes, segmentations, [0, 56, 112], "Further increase", "0-:1",
                                       ["nonCR_nonPD", "PD", "PD"], registerScans=False, immunotherapy=True,
                                       nonTargetFurtherIncrease=[None, None, True])
        self.assertEqual([t.non_target_further_increase for t in request.timepoints], [None, None, True])
        computed = DigitalTwinTumorLogic.computeTwin(request)
        self.assertEqual(computed.state.recist["timepoints"][2]["overall"], "iCPD")
        # a parameter node saved before the column: no further-increase list at all
        rows = DigitalTwinTumorLogic.timepointsFromLists(volumes, segmentations, [0, 56, 112],
                                                         ["nonCR_nonPD", "PD", "PD"], ["tracking", "yes", "no"], [])
        self.assertEqual([row["furtherIncrease"] for row in rows], ["not_assessed"] * 3)
        self.assertEqual([row["newLesions"] for row in rows], ["tracking", "yes", "no"])
        self.assertEqual([row["nonTarget"] for row in rows], ["nonCR_nonPD", "PD", "PD"])
        with self.assertRaises(ValueError):  # one call per timepoint
            logic.readTwinInputs(volumes, segmentations, [0, 56, 112], "Further increase", "0-:1",
                                 registerScans=False, nonTargetFurtherIncrease=[None, True])
        self.delayDisplay("Test passed")

    def test_RecistWarningsReachTheSummary(self):
        """iRECIST, target L1 unchanged: the non-target disease is PD at day 56 (iUPD), then the reader
        calls it non-CR/non-PD at day 112 yet answers "yes" to further increase. A further increase
        confirms iCPD only on a PD non-target (Seymour 2017), so it cannot count here; the engine warns,
        and that warning must be in what the module shows (status line count, full text), also when the
        twin is restored from the scene. A twin without warnings shows no warning line."""
        self.delayDisplay("RECIST warnings in the module's summary")
        volumes, segmentations = self._syntheticScans([{"L1": ((32, 32, 10), 10.0)}] * 3)
        logic = DigitalTwinTumorLogic()
        summary = logic.buildTwinFromNodes(volumes, segmentations, [0, 56, 112], "Warned twin", "0-:1",
                                           ["nonCR_nonPD", "PD", "nonCR_nonPD"], registerScans=False,
                                           immunotherapy=True, nonTargetFurtherIncrease=[None, None, True])
        self.assertEqual([tp["overall"] for tp in logic.state.recist["timepoints"][1:]], ["iUPD", "iSD"])
        warnings = logic.state.recist["warnings"]
        ignored = [w for w in warnings if "day 112" in w and "not counted" in w]
        self.assertEqual(len(ignored), 1, warnings)
        lines = summary.split("\n")
        count = len(warnings)
        self.assertIn(f"{count} iRECIST warning", lines[0])  # the status line itself says there are some
        for warning in warnings:
            self.assertTrue(any(warning in line for line in lines[1:]), (warning, summary))
        # a scene reloaded later shows them too (they are in the twin's state node)
        restored = DigitalTwinTumorLogic().restoreTwinFromScene("Warned twin")
        self.assertIn(f"{count} iRECIST warning", restored.split("\n")[0])
        self.assertIn(ignored[0], restored)
        # the same twin without the contradicting call: no such warning, no warning count
        clean = logic.buildTwinFromNodes(volumes, segmentations, [0, 56, 112], "Warned twin", "0-:1",
                                         ["nonCR_nonPD", "PD", "nonCR_nonPD"], registerScans=False,
                                         immunotherapy=True)
        self.assertEqual(logic.state.recist["warnings"], [])
        self.assertNotIn("warning", clean)
        self.delayDisplay("Test passed")

    @staticmethod
    def _sceneNodeIds():
        scene = slicer.mrmlScene
        return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]

    def test_CancelledBuildLeavesTheSceneUntouched(self):
        """The widget's worker: computeTwin in a thread stops at the next step boundary when cancelled
        (here after the first progress event, the registration of the two scans: tracking and the fits
        never start) and the scene gains no twin node. Cancelled before it starts, it does nothing."""
        import threading

        self.delayDisplay("Cancelling a twin build")
        volumes, segmentations = self._syntheticScans(
            [{"L1": ((20, 20, 10), r1), "L2": ((45, 44, 10), 10.0)} for r1 in (15.0, 6.0)])
        logic = DigitalTwinTumorLogic()
        request = logic.readTwinInputs(volumes, segmentations, [0, 56], "Cancelled twin", "0-:1",
                                       registerScans=True)
        # (reading a mask leaves an unused labelmap display node: slicer.util.arrayFromSegmentBinaryLabelmap)
        before = self._sceneNodeIds()
        steps, results = [], []

        def work():
            results.append(DigitalTwinTumorLogic.computeTwin(
                request, progress=lambda done, total, step: steps.append((done, total, step)),
                should_cancel=lambda: bool(steps)))

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(60)
        self.assertFalse(worker.is_alive())
        self.assertEqual(steps, [(0, 3, ("register", 1, 1))])  # a registration, then tracking and fits
        self.assertTrue(results[0].cancelled)
        self.assertIsNone(results[0].state)
        with self.assertRaises(ValueError):
            logic.publishTwin(results[0])
        self.assertEqual(self._sceneNodeIds(), before)
        self.assertEqual(logic.twinNodes(), {})
        self.assertFalse(logic.hasTwin())
        self.assertIn("pair 1 of 1", DigitalTwinTumorLogic.progressText(("register", 1, 1)))
        steps.clear()
        self.assertTrue(DigitalTwinTumorLogic.computeTwin(request, progress=lambda *a: steps.append(a),
                                                          should_cancel=lambda: True).cancelled)
        self.assertEqual(steps, [])
        # errors are shown as DTTLib's problem and fix, not as a traceback
        from DTTLib.errors import InputError

        text = DigitalTwinTumorLogic.errorText("Failed.", InputError("the scans differ", "register them"))
        self.assertIn("the scans differ", text)
        self.assertIn("register them", text)
        self.assertNotIn("Traceback", text)
        self.delayDisplay("Test passed")

    def test_FailedPublishLeavesNoHalfWrittenNodes(self):
        """Writing a twin's nodes is all or nothing: when it fails half-way (here the last node, the
        state) the nodes written so far are removed and the previous twin keeps its nodes."""
        import copy

        self.delayDisplay("A twin whose publishing fails")
        volumes, segmentations = self._syntheticScans(
            [{"L1": ((20, 20, 10), r1), "L2": ((45, 44, 10), 10.0)} for r1 in (15.0, 6.0)])
        logic = DigitalTwinTumorLogic()
        logic.buildTwinFromNodes(volumes, segmentations, [0, 56], "Twin", "0-:1", registerScans=False)
        state, nodes = logic.state, logic.twinNodes()
        request = logic.readTwinInputs(volumes, segmentations, [0, 70], "Twin", "0-:1", registerScans=False)
        before = self._sceneNodeIds()
        computed = DigitalTwinTumorLogic.computeTwin(request)
        self.assertFalse(computed.cancelled)

        def fail(*args, **kwargs):
            raise RuntimeError("test: writing the state node fails")

        computed.state = copy.copy(computed.state)
        computed.state.to_json = fail
        with self.assertRaises(RuntimeError):
            logic.publishTwin(computed)
        self.assertEqual(self._sceneNodeIds(), before)
        self.assertIs(logic.state, state)
        self.assertEqual({role: node.GetID() for role, node in logic.twinNodes().items()},
                         {role: node.GetID() for role, node in nodes.items()})
        self.delayDisplay("Test passed")

    @staticmethod
    def _syntheticMask(volume, centre, radius):
        import numpy as np

        shape = tuple(reversed(volume.GetImageData().GetDimensions()))
        k, j, i = np.indices(shape)
        return ((((i - centre[0]) ** 2 + (j - centre[1]) ** 2 + ((k - centre[2]) * 2.0) ** 2) <= radius ** 2)
                .astype(np.uint8))
