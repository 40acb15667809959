"""Digital Twin Tumor: the lesion organ table — each lesion's organ and lymph-node status, read
from its segments' tags (DTTLib.mrml.lesions) and correctable by the reader for RECIST.

Widget and logic parts are mixed into the module's classes (DigitalTwinTumor.py).
"""

import slicer
from slicer.i18n import tr as _


class LesionAnatomyWidget:
    """The widget's part (uses the module widget's controls and logic)."""

    LESION_COLUMN, ORGAN_COLUMN, NODAL_COLUMN = range(3)

    def _updateLesionAnatomyTable(self, force: bool = False) -> None:
        import qt

        node = self._parameterNode
        segmentations = [s for s in node.timepointSegmentations if s is not None]
        shown = (tuple(s.GetID() for s in segmentations), node.lesionAnatomy)
        if shown == self._anatomyShown and not force:
            return
        self._anatomyShown = shown
        rows = self.logic.lesionAnatomy(segmentations, self.logic.parseLesionAnatomy(node.lesionAnatomy))
        table = self.ui.lesionAnatomyTableWidget
        wasBlocked = table.blockSignals(True)
        try:
            table.setRowCount(len(rows))
            for row, (lesion, anatomy) in enumerate(rows.items()):
                origin = {"user": _("set here"), "tag": _("from the segment's DTT.Organ / DTT.Nodal tags"),
                          "terminology": _("from the segment's terminology"),
                          "": _("not given: set the organ (RECIST allows two targets per organ)")}[anatomy["origin"]]
                lesionItem = qt.QTableWidgetItem(lesion)
                lesionItem.setFlags(lesionItem.flags() ^ qt.Qt.ItemIsEditable)
                lesionItem.setToolTip(origin)
                organItem = qt.QTableWidgetItem(anatomy["organ"])
                organItem.setToolTip(_("Organ of this lesion, e.g. liver, lung; {origin}").format(origin=origin))
                nodalItem = qt.QTableWidgetItem("")
                nodalItem.setFlags((nodalItem.flags() | qt.Qt.ItemIsUserCheckable) ^ qt.Qt.ItemIsEditable)
                nodalItem.setCheckState(qt.Qt.Checked if anatomy["nodal"] else qt.Qt.Unchecked)
                nodalItem.setToolTip(_("Lymph node: measured by its short axis (RECIST 1.1)"))
                table.setItem(row, self.LESION_COLUMN, lesionItem)
                table.setItem(row, self.ORGAN_COLUMN, organItem)
                table.setItem(row, self.NODAL_COLUMN, nodalItem)
        finally:
            table.blockSignals(wasBlocked)

    def _onLesionAnatomyEdited(self, row: int, column: int) -> None:
        """Table -> parameter node: the edited lesion's organ and nodal flag become the user's."""
        import qt

        table = self.ui.lesionAnatomyTableWidget
        items = [table.item(row, c) for c in (self.LESION_COLUMN, self.ORGAN_COLUMN, self.NODAL_COLUMN)]
        if not self._parameterNode or any(item is None for item in items):
            return
        node = self._parameterNode
        text = self.logic.setLesionAnatomy(node.lesionAnatomy, items[0].text(), items[1].text(),
                                           items[2].checkState() == qt.Qt.Checked)
        # the table already shows this edit: do not rebuild it under the cell being edited
        self._anatomyShown = (self._anatomyShown[0] if self._anatomyShown else (), text)
        node.lesionAnatomy = text

    def onRefreshLesionsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to read the lesions of the segmentations."), waitCursor=True):
            self._updateLesionAnatomyTable(force=True)


class LesionAnatomyLogic:
    """The logic's part (no GUI)."""

    @staticmethod
    def lesionIdOfSegment(segmentName: str) -> str:
        """"L1" for DTT Segmentation's "L1 @ t0"; any other segment name is its own lesion id."""
        from DTTLib.mrml.lesions import lesion_id_of_segment

        return lesion_id_of_segment(segmentName)

    @staticmethod
    def segmentAnatomy(segment) -> tuple:
        """(organ, nodal, origin) a segment carries (DTTLib.mrml.lesions.segment_anatomy)."""
        import dataclasses

        from DTTLib.mrml.lesions import segment_anatomy

        return dataclasses.astuple(segment_anatomy(segment))

    @staticmethod
    def _lesionSegments(segmentationNode) -> list:
        """(segment id, segment) of each lesion segment, pending nnU-Net proposals left out."""
        from DTTLib.mrml.lesions import lesion_segments

        return lesion_segments(segmentationNode)

    def lesionAnatomy(self, segmentationNodes, userEntries=None) -> dict:
        """lesion id -> {"organ", "nodal", "origin"}, baseline first, the user's entries winning."""
        from DTTLib.mrml.lesions import lesion_anatomy

        return lesion_anatomy(list(segmentationNodes), userEntries)

    @staticmethod
    def parseLesionAnatomy(text: str) -> dict:
        """The lesionAnatomy parameter as {lesion id: {"organ", "nodal"}}; {} when unreadable."""
        from DTTLib.mrml.lesions import parse_anatomy_entries

        return parse_anatomy_entries(text)

    @staticmethod
    def setLesionAnatomy(text: str, lesion: str, organ: str, nodal: bool) -> str:
        """The lesionAnatomy parameter with one lesion's organ and nodal status set by the user."""
        from DTTLib.mrml.lesions import with_anatomy_entry

        return with_anatomy_entry(text, lesion, organ, nodal)
