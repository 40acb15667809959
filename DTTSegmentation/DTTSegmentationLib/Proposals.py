"""DTT Segmentation: whole-scan lesion proposals from a trained nnU-Net model — find, accept as a
lesion, reject (DTTLib.segmentation.nnunet*, DTTLib.segmentation.nnunet_scene).

Widget, logic and self-test parts are mixed into the module's classes (DTTSegmentation.py).
"""

import slicer
from slicer.i18n import tr as _

class ProposalsWidget:
    """The widget's part (uses the module widget's controls, logic and job runner)."""

    def _addNnUNetControls(self) -> None:
        """Whole-scan lesion proposals from a trained nnU-Net model folder; accept or reject each."""
        import ctk
        import qt

        box = qt.QGroupBox(_("Whole scan (nnU-Net)"))
        form = qt.QFormLayout(box)
        self.nnunetFolder = ctk.ctkPathLineEdit()
        self.nnunetFolder.filters = ctk.ctkPathLineEdit.Dirs
        self.nnunetFolder.settingKey = "DTTSegmentation/nnUNetModelFolder"
        self.nnunetFolder.toolTip = _("Trained nnU-Net v2 model folder (dataset.json, plans.json, fold_N/)")
        form.addRow(_("Model folder:"), self.nnunetFolder)
        self.findLesionsButton = qt.QPushButton(_("Find lesions (nnU-Net)"))
        self.findLesionsButton.toolTip = _("Segment the whole scan; each lesion becomes a proposal segment")
        form.addRow(self.findLesionsButton)
        self.proposalCombo = qt.QComboBox()
        form.addRow(_("Proposal:"), self.proposalCombo)
        row = qt.QHBoxLayout()
        self.acceptProposalButton = qt.QPushButton(_("Accept as lesion id"))
        self.acceptProposalButton.toolTip = _("Rename the proposal to '<lesion id> @ <timepoint>'")
        self.rejectProposalButton = qt.QPushButton(_("Reject"))
        self.rejectAllButton = qt.QPushButton(_("Reject all"))
        for button in (self.acceptProposalButton, self.rejectProposalButton, self.rejectAllButton):
            row.addWidget(button)
        form.addRow(row)
        self.layout.insertWidget(self.layout.count() - 1, box)
        self.findLesionsButton.connect("clicked(bool)", self.onFindLesions)
        self.acceptProposalButton.connect("clicked(bool)", self.onAcceptProposal)
        self.rejectProposalButton.connect("clicked(bool)", lambda: self.onRejectProposals(False))
        self.rejectAllButton.connect("clicked(bool)", lambda: self.onRejectProposals(True))

    def _refreshProposals(self) -> None:
        """List the pending proposals of the chosen segmentation, keeping the one selected if it is
        still pending (called whenever segments are added, removed or renamed)."""
        if getattr(self, "proposalCombo", None) is None:
            return
        selected = self.proposalCombo.currentData
        self.proposalCombo.clear()
        node = self._parameterNode
        if node and node.segmentation:
            for segmentId, name in self.logic.pendingProposals(node.segmentation):
                self.proposalCombo.addItem(name, segmentId)
        index = self.proposalCombo.findData(selected) if selected else -1
        if index >= 0:
            self.proposalCombo.currentIndex = index

    def onFindLesions(self) -> None:
        """nnU-Net in a worker thread (progress, cancel); proposals are added on the GUI thread."""
        node = self._parameterNode
        if not (node and node.inputVolume) or self._job is not None:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to find lesions."), waitCursor=True):
            if not self.logic.ensureNnUNetInstalled(lambda text: slicer.util.confirmOkCancelDisplay(text)):
                return
            if not node.segmentation:
                node.segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
                node.segmentation.CreateDefaultDisplayNodes()
            from DTTLib.mrml.volumes import image_from_volume_node

            # the scan the model sees, and where its proposals go, as they are now (not when it ends)
            volume, segmentation, timepointLabel = node.inputVolume, node.segmentation, node.timepointLabel
            image = image_from_volume_node(volume)
            segmenter = self.logic.nnunetSegmenter(self.nnunetFolder.currentPath)

        def compute(progress, should_cancel):
            return self.logic.findLesions(image, segmenter, progress=progress, should_cancel=should_cancel)

        def finish(result):
            if result.cancelled:
                self.ui.statusLabel.text = _("nnU-Net cancelled: no proposals added")
                return
            with slicer.util.tryWithErrorDisplay(_("Failed to add the proposals."), waitCursor=True):
                self._checkStillInScene(volume, segmentation)
                stored = self.logic.storeProposals(result, volume, segmentation, timepointLabel)
                self._refreshProposals()
                note = f" — {result.note}" if result.note else ""
                self.ui.statusLabel.text = _("{n} lesion proposal(s): accept, edit or reject each{note}").format(
                    n=len(stored), note=note)

        self._runInBackground(compute, finish, _("Failed to find lesions: {error}"), intervalMs=200)

    def onAcceptProposal(self) -> None:
        node = self._parameterNode
        segmentId = self.proposalCombo.currentData
        if not (node and node.segmentation and segmentId):
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to accept the proposal."), waitCursor=True):
            name = self.logic.acceptProposal(node.segmentation, segmentId, node.lesionId, node.timepointLabel,
                                             node.organ, node.lymphNode)
            self.ui.statusLabel.text = _("Accepted as {name}").format(name=name)
        self._refreshProposals()

    def onRejectProposals(self, everything: bool) -> None:
        node = self._parameterNode
        if not (node and node.segmentation):
            return
        chosen = None if everything else [self.proposalCombo.currentData]
        with slicer.util.tryWithErrorDisplay(_("Failed to reject proposals."), waitCursor=True):
            count = self.logic.rejectProposals(node.segmentation, chosen)
            self.ui.statusLabel.text = _("{n} proposal(s) rejected").format(n=count)
        self._refreshProposals()


class ProposalsLogic:
    """The logic's part (no GUI)."""

    def ensureNnUNetInstalled(self, confirm) -> bool:
        """First use: install nnunetv2 (the 'nnunet' feature) after the user agrees."""
        from DTTLib.dependencies import install_in_slicer

        return install_in_slicer("nnunet", confirm)

    def nnunetSegmenter(self, folder: str):
        """The model in ``folder``, loaded once per folder (device from the hardware profile)."""
        cached = getattr(self, "_nnunet", {})
        self._nnunet = cached
        if folder not in cached:
            from DTTLib.segmentation.nnunet import NnUNetSegmenter

            cached[folder] = NnUNetSegmenter(folder or "")
        return cached[folder]

    def findLesions(self, image, segmenter, progress=None, should_cancel=None):
        """Pure computation (no MRML): safe in a worker thread; returns DTTLib's ProposalSet."""
        from DTTLib.segmentation.nnunet_proposals import find_lesions

        return find_lesions(segmenter, image, progress=progress, should_cancel=should_cancel)

    def storeProposals(self, proposalSet, volumeNode, segmentationNode, timepointLabel):
        from DTTLib.segmentation.nnunet_scene import store_proposals

        return store_proposals(proposalSet, volumeNode, segmentationNode, timepointLabel, scene=slicer.mrmlScene)

    def pendingProposals(self, segmentationNode) -> list:
        """(segment id, name) of proposals not yet accepted or rejected."""
        from DTTLib.segmentation.nnunet_scene import pending_proposals

        segmentation = segmentationNode.GetSegmentation()
        return [(i, segmentation.GetSegment(i).GetName()) for i in pending_proposals(segmentationNode)]

    def acceptProposal(self, segmentationNode, segmentId, lesionId, timepointLabel, organ="", lymphNode=False) -> str:
        """Rename the proposal to the lesion's name and tag it with the lesion's organ; returns the name."""
        from DTTLib.segmentation.nnunet_scene import accept_proposal

        name = accept_proposal(segmentationNode, segmentId, lesionId, timepointLabel, scene=slicer.mrmlScene)
        self.writeLesionAnatomy(segmentationNode, segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name),
                                organ, lymphNode)
        return name

    def rejectProposals(self, segmentationNode, segmentIds=None) -> int:
        from DTTLib.segmentation.nnunet_scene import reject_proposals

        return reject_proposals(segmentationNode, segmentIds, scene=slicer.mrmlScene)


class ProposalsTest:
    """The self-test's part (run by DTTSegmentationTest.runTest)."""

    def test_NnUNetProposals(self):
        """Proposals (here from a known label map, no network) are added, accepted and rejected."""
        import numpy as np

        from DTTLib.imaging import ImageVolume
        from DTTLib.mrml.volumes import add_volume_node
        from DTTLib.segmentation.nnunet_proposals import make_proposals

        labels = np.zeros((8, 32, 32), np.uint8)
        labels[2:5, 4:10, 4:10] = 1
        labels[4:7, 20:28, 18:30] = 1
        image = ImageVolume(np.zeros(labels.shape, np.int16), (1.0, 1.0, 2.0))
        proposals = make_proposals(labels, np.where(labels > 0, 0.9, 0.0).astype(np.float32), image, (1,))
        volume = add_volume_node(image, "Scan")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
        logic = self.newLogic()
        stored = logic.storeProposals(proposals, volume, segmentation, "t1")
        self.assertEqual([s.voxels for s in stored], [3 * 8 * 12, 3 * 6 * 6])
        pending = logic.pendingProposals(segmentation)
        self.assertEqual([name for _, name in pending], ["P1 @ t1 (proposal)", "P2 @ t1 (proposal)"])
        self.assertEqual(logic.acceptProposal(segmentation, pending[0][0], "L1", "t1", "lung", False), "L1 @ t1")
        self.assertLesionTags(segmentation, "L1 @ t1", "lung", "false")
        self.assertEqual(logic.rejectProposals(segmentation), 1)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        self.delayDisplay("nnU-Net proposal test passed")
