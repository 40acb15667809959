"""DTT Segmentation: preparing the slices near the box while it is drawn, so the click mostly
runs the fast decoder (DTTLib.segmentation.prefetch does the work in a background thread).

Widget, logic and self-test parts are mixed into the module's classes (DTTSegmentation.py).
"""

import logging

from slicer.i18n import tr as _

from DTTSegmentationLib.Common import PREFETCH_DELAY_MS, PREFETCH_SETTING, edgeRefinementOverride, lesionOrgan

class PrefetchWidget:
    """The widget's part (uses the module widget's controls, logic and job runner)."""

    def _addPrefetchControls(self, form) -> None:
        """The check box (remembered in the settings), its status line and the two timers."""
        import qt

        self.prefetchCheck = qt.QCheckBox(_("Prepare nearby slices while the box is drawn"))
        self.prefetchCheck.toolTip = _(
            "On a CPU the model spends about 0.4 s per slice reading the image. With this on, the slices "
            "around the box are read in the background as soon as the box is placed, so 'Segment lesion (3D)' "
            "then mostly runs the fast box decoder. The outline is the same either way.")
        form.addRow(self.prefetchCheck)
        self.prefetchCheck.checked = str(qt.QSettings().value(PREFETCH_SETTING, "true")).lower() == "true"
        self.prefetchLabel = qt.QLabel("")
        form.addRow(self.prefetchLabel)
        self.prefetchCheck.connect("toggled(bool)", self.onPrefetchToggled)
        self.modelCombo.connect("currentIndexChanged(int)", lambda index: self._schedulePrefetch())
        self._prefetchKey = None
        self._prefetchImage = (None, None)
        self._prefetchTimer = qt.QTimer()  # starts the prefetch once the box has stopped moving
        self._prefetchTimer.singleShot = True
        self._prefetchTimer.interval = PREFETCH_DELAY_MS
        self._prefetchTimer.connect("timeout()", self._startPrefetch)
        self._prefetchPoll = qt.QTimer()
        self._prefetchPoll.interval = 250
        self._prefetchPoll.connect("timeout()", self._showPrefetch)

    def onPrefetchToggled(self, checked: bool) -> None:
        import qt

        qt.QSettings().setValue(PREFETCH_SETTING, "true" if checked else "false")
        if checked:
            self._schedulePrefetch()
        else:
            self._stopPrefetch()

    def _schedulePrefetch(self) -> None:
        if getattr(self, "prefetchCheck", None) is not None and self.prefetchCheck.checked:
            self._prefetchTimer.start()  # restarts the delay while the box keeps moving

    def _stopPrefetch(self, forget: bool = True) -> None:
        """Stop preparing slices (between two slices); ``forget`` lets the same box start again."""
        if getattr(self, "_prefetchTimer", None) is None:
            return
        self._prefetchTimer.stop()
        self.logic.prefetcher.cancel()
        if forget:
            self._prefetchKey = None

    def _startPrefetch(self) -> None:
        """Prepare the slices around the box in the background — only when nothing else runs, the
        model is a box-prompt model whose packages are installed (never an install prompt here),
        and the box or its settings changed since the last time."""
        node = self._parameterNode
        model = self.modelCombo.currentData
        if not (self.prefetchCheck.checked and node and node.inputVolume and node.roi) or self._job is not None \
                or model == "threshold" or not self.logic.segmentationReady():
            return
        volume = node.inputVolume
        try:
            imageKey = (volume.GetID(), volume.GetMTime(), volume.GetImageData().GetMTime())
            if self._prefetchImage[0] != imageKey:  # the voxels are copied once per volume, not per move
                self._prefetchImage = (imageKey, self.logic.imageAndBox(volume, node.roi)[0])
            image = self._prefetchImage[1]
            box = self.logic.boxInImage(image, node.roi)
        except Exception as error:  # noqa: BLE001 - a box outside the scan: the run will say so
            logging.debug("DTTSegmentation: no slices prepared (%s)", error)
            return
        refineEdges = edgeRefinementOverride(node.refineEdges)
        organ = lesionOrgan(node.organ, node.lymphNode)
        key = (imageKey, box.k0, box.k1, model, organ, refineEdges)
        if key == self._prefetchKey:
            return
        self._prefetchKey = key
        self.logic.prefetchSlices(image, box, model, organ, refineEdges)
        self._prefetchPoll.start()

    def _showPrefetch(self) -> None:
        status = self.logic.prefetcher.status()
        if status.error:
            logging.info("DTTSegmentation: preparing slices stopped: %s", status.error)
            self.prefetchLabel.text = ""
        elif status.running:
            self.prefetchLabel.text = _("Preparing slices near the box: {done} of {total}").format(
                done=status.done, total=status.total or "…")
        elif status.result is not None and not status.result.cancelled and status.result.planned:
            self.prefetchLabel.text = _("{n} slices near the box are ready").format(n=len(status.result.planned))
        else:
            self.prefetchLabel.text = ""
        if not status.running:
            self._prefetchPoll.stop()


class PrefetchLogic:
    """The logic's part (no GUI)."""

    @property
    def prefetcher(self):
        """The one background slice preparation (DTTLib.segmentation.prefetch.PrefetchWorker)."""
        if self._prefetcher is None:
            from DTTLib.segmentation.prefetch import PrefetchWorker

            self._prefetcher = PrefetchWorker()
        return self._prefetcher

    def prefetchSlices(self, image, box, model: str, organ: str = "", refineEdges=None) -> None:
        """Start encoding the slices a 3-D run from ``box`` will ask for, in a background thread,
        with exactly the settings computeLesion will use; the model is loaded there if needed.
        Pure computation (no MRML), so ``image`` must already be copied out of the scene."""
        from DTTLib.segmentation.scene import lesion_settings

        settings = lesion_settings(image, "3d", organ or "", refineEdges)
        self.prefetcher.start(image, box, lambda: self.segmenter(model), settings)


class PrefetchTest:
    """The self-test's part (run by DTTSegmentationTest.runTest)."""

    def test_PrepareSlicesWhileDrawing(self, lesion=None):
        """Slices around a drawn box are encoded in the background (as the widget does once the box
        stops moving); the run that follows encodes nothing and draws the same outline as a run
        without them. ``lesion``: test_ModelRespectsOtherSegments's result."""
        lesion = lesion or self.test_ModelRespectsOtherSegments()
        if lesion is None:
            return
        import numpy as np

        from DTTLib.mrml.markups import RASBox, add_roi_node

        logic, volume = lesion[0], lesion[1]
        roi = add_roi_node(RASBox((32.0, 32.0, 12.0), (23.0, 19.0, 1.0)), "Box")  # on slice k = 4
        image, box = logic.imageAndBox(volume, roi)
        self.assertEqual((box.k0, box.k1), (4, 4))
        segmenter = logic.segmenter("litemedsam")
        segmenter.clear_cache()
        cold = logic.computeLesion(image, box, segmenter, "3d", organ="lymph node")
        segmenter.clear_cache()
        logic.prefetchSlices(image, box, "litemedsam", organ="lymph node")
        self.assertTrue(logic.prefetcher.wait(120))
        status = logic.prefetcher.status()
        self.assertEqual(status.error, "")
        self.assertEqual(status.result.planned, [4, 5, 3, 6, 2, 7, 1, 8, 0])  # the seed, then outwards
        self.assertEqual(status.result.encoded, status.result.planned)
        encoded = []
        original = segmenter._encode_array
        segmenter._encode_array = lambda batch: encoded.append(len(batch)) or original(batch)
        try:
            warm = logic.computeLesion(image, box, segmenter, "3d", organ="lymph node")
        finally:
            del segmenter._encode_array
        self.assertEqual(encoded, [])
        self.assertTrue(np.array_equal(warm.mask, cold.mask))
        self.delayDisplay("Prepared slices test passed")
