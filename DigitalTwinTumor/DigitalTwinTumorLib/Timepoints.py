"""Digital Twin Tumor: the timepoints table — a row per scan (volume, lesion segmentation, day,
RECIST non-target status, iRECIST further increase, new lesions), any number of follow-ups;
the parameter node holds the values as six parallel lists.

Widget, logic and self-test parts are mixed into the module's classes (DigitalTwinTumor.py).
"""

import logging

import vtk

import slicer
from slicer.i18n import tr as _

from DigitalTwinTumorLib.Common import (FOLLOW_UP_INTERVAL_DAYS, FURTHER_INCREASE_CHOICES, MAX_DAY,
                                        NEW_LESION_CHOICES, NON_TARGET_CHOICES)


class TimepointsWidget:
    """The widget's part (uses the module widget's controls and logic)."""

    #: the table's columns, in order: the parameter node list each one edits
    TIMEPOINT_COLUMNS = ("volume", "segmentation", "day", "nonTarget", "furtherIncrease", "newLesions")

    def _timepoints(self, node=None) -> list:
        """The parameter node's timepoints as dicts (see DigitalTwinTumorLogic.timepointsFromLists)."""
        node = node or self._parameterNode
        return self.logic.timepointsFromLists(
            node.timepointVolumes, node.timepointSegmentations, node.timepointDays, node.timepointNonTargets,
            node.timepointNewLesions, node.timepointNonTargetFurtherIncreases)

    def _writeTimepoints(self, timepoints, node=None) -> None:
        """All six lists in one modification, so observers never see them with different lengths."""
        node = node or self._parameterNode
        with slicer.util.NodeModify(node.parameterNode):
            node.timepointVolumes = [t["volume"] for t in timepoints]
            node.timepointSegmentations = [t["segmentation"] for t in timepoints]
            node.timepointDays = [float(t["day"]) for t in timepoints]
            node.timepointNonTargets = [t["nonTarget"] for t in timepoints]
            node.timepointNonTargetFurtherIncreases = [t["furtherIncrease"] for t in timepoints]
            node.timepointNewLesions = [t["newLesions"] for t in timepoints]

    def _newNodeSelector(self, nodeType: str, toolTip: str):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = [nodeType]
        selector.showChildNodeTypes = False
        selector.noneEnabled = True
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.selectNodeUponCreation = False  # loading another scan must not change the rows
        selector.toolTip = toolTip
        selector.setMRMLScene(slicer.mrmlScene)
        selector.connect("currentNodeChanged(vtkMRMLNode*)", self._onTimepointEdited)
        return selector

    def _addTimepointRowWidgets(self, row: int) -> None:
        import qt

        table = self.ui.timepointsTableWidget
        cells = {
            "volume": self._newNodeSelector("vtkMRMLScalarVolumeNode", _("Scan of this timepoint")),
            "segmentation": self._newNodeSelector(
                "vtkMRMLSegmentationNode", _("Lesion segmentation of this scan (one segment per lesion)")),
            "day": qt.QDoubleSpinBox(),
            "nonTarget": qt.QComboBox(),
            "furtherIncrease": qt.QComboBox(),
            "newLesions": qt.QComboBox(),
        }
        day = cells["day"]
        day.decimals = 0
        day.minimum = 0
        day.maximum = MAX_DAY
        day.suffix = _(" d")
        day.toolTip = _("Days from the baseline scan") if row else _("The baseline is day 0")
        day.enabled = row > 0
        day.connect("valueChanged(double)", self._onTimepointEdited)
        cells["nonTarget"].addItems(list(NON_TARGET_CHOICES))
        cells["nonTarget"].toolTip = _("RECIST non-target assessment at this timepoint")
        cells["nonTarget"].connect("currentIndexChanged(int)", self._onTimepointEdited)
        cells["furtherIncrease"].addItems([_("not assessed"), _("yes"), _("no")])
        cells["furtherIncrease"].toolTip = _(
            "iRECIST: has the PD non-target disease grown further since the last visit? Yes confirms a "
            "non-target iUPD as iCPD; no, or not assessed, keeps iUPD (the response says which)") if row else _(
            "The baseline has nothing to increase from")
        cells["furtherIncrease"].enabled = row > 0
        cells["furtherIncrease"].connect("currentIndexChanged(int)", self._onTimepointEdited)
        cells["newLesions"].addItems([_("from tracking"), _("yes"), _("no")])
        cells["newLesions"].toolTip = _(
            "New lesions at this follow-up: as lesion tracking finds them, or your reading") if row else _(
            "The baseline has no new lesions")
        cells["newLesions"].enabled = row > 0
        cells["newLesions"].connect("currentIndexChanged(int)", self._onTimepointEdited)
        for column, key in enumerate(self.TIMEPOINT_COLUMNS):
            table.setCellWidget(row, column, cells[key])
        self._timepointWidgets.append(cells)

    def _updateTimepointsTable(self) -> None:
        """Parameter node -> table; rows are made or dropped only when the number of timepoints changes."""
        timepoints = self._timepoints()
        table = self.ui.timepointsTableWidget
        self._updatingTimepoints = True
        try:
            if table.rowCount != len(timepoints) or len(self._timepointWidgets) != len(timepoints):
                table.setRowCount(len(timepoints))  # dropped rows delete their cell widgets
                del self._timepointWidgets[len(timepoints):]
                for row in range(len(self._timepointWidgets), len(timepoints)):
                    self._addTimepointRowWidgets(row)
            for cells, timepoint in zip(self._timepointWidgets, timepoints):
                if cells["volume"].currentNode() != timepoint["volume"]:
                    cells["volume"].setCurrentNode(timepoint["volume"])
                if cells["segmentation"].currentNode() != timepoint["segmentation"]:
                    cells["segmentation"].setCurrentNode(timepoint["segmentation"])
                if cells["day"].value != timepoint["day"]:
                    cells["day"].value = timepoint["day"]
                for key, choices, fallback in (("nonTarget", NON_TARGET_CHOICES, "none"),
                                               ("furtherIncrease", FURTHER_INCREASE_CHOICES, "not_assessed"),
                                               ("newLesions", NEW_LESION_CHOICES, "tracking")):
                    value = timepoint[key] if timepoint[key] in choices else fallback
                    if cells[key].currentIndex != choices.index(value):
                        cells[key].currentIndex = choices.index(value)
            # the twin orders timepoints by day: label each row with the index corrections use ("1:L2")
            order = sorted(range(len(timepoints)), key=lambda row: timepoints[row]["day"])
            table.setVerticalHeaderLabels([str(order.index(row)) for row in range(len(timepoints))])
        finally:
            self._updatingTimepoints = False

    def _onTimepointEdited(self, *args) -> None:
        """Table -> parameter node."""
        if self._updatingTimepoints or not self._parameterNode:
            return
        timepoints = []
        for row, cells in enumerate(self._timepointWidgets):
            timepoints.append({
                "volume": cells["volume"].currentNode(),
                "segmentation": cells["segmentation"].currentNode(),
                "day": float(cells["day"].value) if row else 0.0,
                "nonTarget": NON_TARGET_CHOICES[max(cells["nonTarget"].currentIndex, 0)],
                "furtherIncrease": (FURTHER_INCREASE_CHOICES[max(cells["furtherIncrease"].currentIndex, 0)]
                                    if row else "not_assessed"),
                "newLesions": NEW_LESION_CHOICES[max(cells["newLesions"].currentIndex, 0)] if row else "tracking",
            })
        self._writeTimepoints(timepoints)

    def onAddTimepointButton(self) -> None:
        timepoints = self._timepoints()
        last = max([t["day"] for t in timepoints], default=-FOLLOW_UP_INTERVAL_DAYS)
        timepoints.append({"volume": None, "segmentation": None,
                           "day": min(last + FOLLOW_UP_INTERVAL_DAYS, MAX_DAY),
                           "nonTarget": "none", "furtherIncrease": "not_assessed", "newLesions": "tracking"})
        self._writeTimepoints(timepoints)

    def onRemoveTimepointButton(self) -> None:
        """Removes the selected timepoint (the last one when none is selected); two always stay."""
        timepoints = self._timepoints()
        if len(timepoints) <= 2:
            slicer.util.showStatusMessage(_("A twin needs at least two timepoints."), 5000)
            return
        row = self.ui.timepointsTableWidget.currentRow()
        row = row if 0 <= row < len(timepoints) else len(timepoints) - 1
        del timepoints[row]
        if row == 0:
            # The earliest remaining scan becomes the baseline, and row 0 is the baseline row (day fixed
            # at 0, no new lesions): move it there, whatever order the rows are in, and count the days
            # from it. Shifting by the next row's day instead would give earlier rows negative days.
            first = min(range(len(timepoints)), key=lambda index: timepoints[index]["day"])
            timepoints.insert(0, timepoints.pop(first))
            shift = timepoints[0]["day"]
            for timepoint in timepoints:
                timepoint["day"] -= shift
            timepoints[0]["newLesions"] = "tracking"
            timepoints[0]["furtherIncrease"] = "not_assessed"
            slicer.util.showStatusMessage(
                _("The baseline was removed: days now count from the earliest remaining scan (check the "
                  "therapy log)."), 8000)
        self._writeTimepoints(timepoints)


class TimepointsLogic:
    """The logic's part (no GUI)."""

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

    def defaultTimepoints(self, parameterNode=None) -> list:
        """A baseline and one follow-up, as dicts like the widget's timepoint rows. A parameter node
        saved by the two-scan version of this module (baselineVolume, followUpVolume, their
        segmentations, followUpDay, followUpNonTarget) gives its scans, day and non-target status."""

        def reference(role):
            return parameterNode.GetNodeReference(role) if parameterNode is not None else None

        def parameter(name):
            return parameterNode.GetParameter(name) if parameterNode is not None else ""

        try:
            day = float(parameter("followUpDay") or FOLLOW_UP_INTERVAL_DAYS)
        except ValueError:
            day = FOLLOW_UP_INTERVAL_DAYS
        nonTarget = parameter("followUpNonTarget")
        return [{"volume": reference("baselineVolume"), "segmentation": reference("baselineSegmentation"),
                 "day": 0.0, "nonTarget": "none", "furtherIncrease": "not_assessed", "newLesions": "tracking"},
                {"volume": reference("followUpVolume"), "segmentation": reference("followUpSegmentation"),
                 "day": day if day > 0 else FOLLOW_UP_INTERVAL_DAYS,
                 "nonTarget": nonTarget if nonTarget in NON_TARGET_CHOICES else "none",
                 "furtherIncrease": "not_assessed", "newLesions": "tracking"}]

    @staticmethod
    def timepointsFromLists(volumes, segmentations, days, nonTargets, newLesions, furtherIncreases=()) -> list:
        """The timepoint rows (dicts) of the parameter node's lists, one per day. A list shorter than
        the days is padded: a scene saved before a column existed (e.g. the non-target further
        increase) loads with that column's neutral value ("not_assessed" claims nothing)."""
        days = [float(day) for day in days]

        def padded(values, fill):
            values = list(values)
            return (values + [fill] * len(days))[:len(days)]

        return [{"volume": volume, "segmentation": segmentation, "day": day, "nonTarget": nonTarget,
                 "furtherIncrease": furtherIncrease, "newLesions": newLesion}
                for volume, segmentation, day, nonTarget, furtherIncrease, newLesion in zip(
                    padded(volumes, None), padded(segmentations, None), days, padded(nonTargets, "none"),
                    padded(furtherIncreases, "not_assessed"), padded(newLesions, "tracking"))]

    @staticmethod
    def timepointsProblem(timepoints, segmentations: bool = False, minimum: int = 2) -> str:
        """Why these timepoints (dicts with volume, segmentation, day) cannot be assigned, or with
        ``segmentations`` built into a twin; empty when they can."""
        if len(timepoints) < minimum:
            return _("A twin needs at least {count} timepoints").format(count=minimum)
        volumes = [t["volume"] for t in timepoints]
        if any(volume is None for volume in volumes):
            return _("Select a scan for every timepoint")
        if len({volume.GetID() for volume in volumes}) != len(volumes):
            return _("Select a different scan for each timepoint")
        days = [float(t["day"]) for t in timepoints]
        if len(set(days)) != len(days):
            return _("Give each timepoint its own day")
        if segmentations and any(t.get("segmentation") is None for t in timepoints):
            return _("Select the lesion segmentation of every timepoint")
        return ""


class TimepointsTest:
    """The self-test's part (run by DigitalTwinTumorTest.runTest)."""

    def test_TimepointsFromTwoScans(self):
        import numpy as np

        self.delayDisplay("Starting the test")
        logic = self.newLogic()
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
