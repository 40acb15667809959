"""Digital Twin Tumor: opening a `dtt run` output folder (its scene, twin and report) in Slicer
(DTTLib.pipeline.open_output).

Widget and logic parts are mixed into the module's classes (DigitalTwinTumor.py).
"""

import slicer
from slicer.i18n import tr as _


class RunOutputWidget:
    """The widget's part (uses the module widget's controls and logic)."""

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


class RunOutputLogic:
    """The logic's part (no GUI)."""

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
        return "\n".join(self.withRecistWarnings(summary, self.state) + self.state.messages + opened.notes)
