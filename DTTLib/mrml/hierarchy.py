"""Subject hierarchy: patient → study (one study per timepoint) → data nodes.

Slicer's Data module shows this tree; DICOM-loaded scans already sit in it. Nodes we create
have no subject-hierarchy item until we make one, so every placement goes through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from DTTLib.errors import InputError
from DTTLib.mrml.runtime import get_scene, import_slicer

#: DICOM metadata keys (as DTTLib.imaging reads them) → subject-hierarchy attribute getters.
_PATIENT_TAGS = {"PatientID": "GetDICOMPatientIDAttributeName",
                 "PatientName": "GetDICOMPatientNameAttributeName",
                 "PatientBirthDate": "GetDICOMPatientBirthDateAttributeName"}
_STUDY_TAGS = {"StudyInstanceUID": "GetDICOMStudyInstanceUIDAttributeName",
               "StudyDate": "GetDICOMStudyDateAttributeName",
               "StudyDescription": "GetDICOMStudyDescriptionAttributeName"}

#: Our own attributes on study items.
TIMEPOINT_DAY_ATTRIBUTE = "DTT.TimepointDay"
TIMEPOINT_INDEX_ATTRIBUTE = "DTT.TimepointIndex"


@dataclass
class StudyView:
    name: str
    attributes: dict[str, str]
    nodes: list[str] = field(default_factory=list)


@dataclass
class PatientView:
    name: str
    attributes: dict[str, str]
    studies: list[StudyView] = field(default_factory=list)


def subject_hierarchy(scene: Any = None) -> Any:
    slicer = import_slicer()
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene or get_scene())


def add_patient(name: str, attributes: dict[str, str] | None = None, scene: Any = None) -> int:
    sh = subject_hierarchy(scene)
    item = sh.CreateSubjectItem(sh.GetSceneItemID(), name)
    _set_attributes(sh, item, attributes)
    return item


def add_study(patient_item: int, name: str, attributes: dict[str, str] | None = None,
              scene: Any = None) -> int:
    sh = subject_hierarchy(scene)
    if sh.GetItemLevel(patient_item) != "Patient":
        raise InputError(f"item {patient_item} is not a patient", "create the patient item first")
    item = sh.CreateStudyItem(patient_item, name)
    _set_attributes(sh, item, attributes)
    return item


def add_timepoint(patient_item: int, index: int, day: float | None = None, name: str | None = None,
                  scene: Any = None) -> int:
    """A study item that stands for one timepoint of the twin."""
    attributes = {TIMEPOINT_INDEX_ATTRIBUTE: str(index)}
    if day is not None:
        attributes[TIMEPOINT_DAY_ATTRIBUTE] = repr(float(day))
    return add_study(patient_item, name or f"Timepoint {index}", attributes, scene)


def organize_timepoints(volume_nodes: list[Any], days: list[float], patient_name: str,
                        scene: Any = None) -> tuple[int, list[int]]:
    """One patient, one study per timepoint (sorted by day), each scan placed in its study."""
    if len(volume_nodes) != len(days):
        raise InputError(f"{len(volume_nodes)} volumes but {len(days)} days",
                         "give one day (relative to baseline) per volume")
    if not volume_nodes:
        raise InputError("no volumes given", "select at least one scan")
    if len({node.GetID() for node in volume_nodes}) != len(volume_nodes):
        raise InputError("the same volume is assigned to two timepoints", "pick a different scan")
    if len(set(days)) != len(days):
        raise InputError(f"two timepoints share a day ({sorted(days)})", "each scan needs its own day")
    patient = add_patient(patient_name, scene=scene)
    studies = []
    for index, (day, node) in enumerate(sorted(zip(days, volume_nodes), key=lambda pair: pair[0])):
        study = add_timepoint(patient, index, day=day, name=f"Timepoint {index} (day {day:g})", scene=scene)
        place_node(node, study, scene)
        studies.append(study)
    return patient, studies


def place_node(node: Any, parent_item: int, scene: Any = None) -> int:
    """Put a data node under a patient/study item (creating its own item when missing)."""
    sh = subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(parent_item, node)
    else:
        sh.SetItemParent(item, parent_item)
    return item


def patient_and_study_from_dicom(node: Any, dicom: dict[str, Any], scene: Any = None) -> tuple[int, int]:
    """Place a node loaded from DICOM under its patient and study (reusing existing items)."""
    slicer = import_slicer()
    constants = slicer.vtkMRMLSubjectHierarchyConstants
    sh = subject_hierarchy(scene)
    patient_id = str(dicom.get("PatientID") or "")
    study_uid = str(dicom.get("StudyInstanceUID") or "")
    if not patient_id or not study_uid:
        raise InputError("DICOM metadata lacks PatientID or StudyInstanceUID",
                         "load the series with DTTLib.imaging (it reads these tags) or place "
                         "the node with add_patient/add_study")
    patient_attr = getattr(constants, _PATIENT_TAGS["PatientID"])()
    study_attr = getattr(constants, _STUDY_TAGS["StudyInstanceUID"])()
    patient = _find_child(sh, sh.GetSceneItemID(), patient_attr, patient_id)
    if not patient:
        patient = add_patient(str(dicom.get("PatientName") or patient_id),
                              _attributes(constants, _PATIENT_TAGS, dicom), scene)
    study = _find_child(sh, patient, study_attr, study_uid)
    if not study:
        name = str(dicom.get("StudyDescription") or dicom.get("StudyDate") or study_uid)
        study = add_study(patient, name, _attributes(constants, _STUDY_TAGS, dicom), scene)
    place_node(node, study, scene)
    return patient, study


def describe(scene: Any = None) -> list[PatientView]:
    """The patient → study → node tree, for checks and reports."""
    import vtk  # noqa: PLC0415

    sh = subject_hierarchy(scene)
    patients = []
    children = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), children)
    for p in range(children.GetNumberOfIds()):
        patient = children.GetId(p)
        if sh.GetItemLevel(patient) != "Patient":
            continue
        view = PatientView(sh.GetItemName(patient), _item_attributes(sh, patient))
        studies = vtk.vtkIdList()
        sh.GetItemChildren(patient, studies)
        for s in range(studies.GetNumberOfIds()):
            study = studies.GetId(s)
            if sh.GetItemLevel(study) != "Study":  # data placed directly under the patient
                continue
            study_view = StudyView(sh.GetItemName(study), _item_attributes(sh, study))
            nodes = vtk.vtkIdList()
            sh.GetItemChildren(study, nodes, True)
            for n in range(nodes.GetNumberOfIds()):
                data_node = sh.GetItemDataNode(nodes.GetId(n))
                if data_node is not None:
                    study_view.nodes.append(data_node.GetName())
            view.studies.append(study_view)
        patients.append(view)
    return patients


def _find_child(sh: Any, parent: int, attribute: str, value: str) -> int:
    import vtk  # noqa: PLC0415

    children = vtk.vtkIdList()
    sh.GetItemChildren(parent, children)
    for index in range(children.GetNumberOfIds()):
        item = children.GetId(index)
        if sh.GetItemAttribute(item, attribute) == value:
            return item
    return 0


def _attributes(constants: Any, tags: dict[str, str], dicom: dict[str, Any]) -> dict[str, str]:
    return {getattr(constants, getter)(): str(dicom[key])
            for key, getter in tags.items() if dicom.get(key) not in (None, "")}


def _set_attributes(sh: Any, item: int, attributes: dict[str, str] | None) -> None:
    for key, value in (attributes or {}).items():
        sh.SetItemAttribute(item, key, str(value))


def _item_attributes(sh: Any, item: int) -> dict[str, str]:
    return {name: sh.GetItemAttribute(item, name) for name in sh.GetItemAttributeNames(item)}
