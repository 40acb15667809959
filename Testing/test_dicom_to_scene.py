"""DICOM series → volume nodes under their patient and study in the subject hierarchy."""

from __future__ import annotations

import numpy as np
from test_imaging_dicom import make_series

from DTTLib.imaging import read_image
from DTTLib.mrml.hierarchy import describe, patient_and_study_from_dicom
from DTTLib.mrml.volumes import add_volume_node, image_from_volume_node


def test_two_studies_of_one_patient_land_in_one_tree(mrml, tmp_path):
    written = {name: make_series(tmp_path / name, description=name) for name in ("baseline", "follow-up")}
    items = {}
    for name, info in written.items():
        image = read_image(tmp_path / name)
        node = add_volume_node(image, name=name)
        items[name] = patient_and_study_from_dicom(node, image.metadata["dicom"])
        # the node's voxel (0,0,0) sits at the first slice's DICOM position, LPS → RAS
        first_lps = info["positions"][0]
        origin = image_from_volume_node(node).origin
        np.testing.assert_allclose(origin, [-first_lps[0], -first_lps[1], first_lps[2]], atol=1e-6)
    assert items["baseline"][0] == items["follow-up"][0]  # one patient item
    assert items["baseline"][1] != items["follow-up"][1]  # two studies (different StudyInstanceUIDs)
    tree = describe()
    assert len(tree) == 1
    assert tree[0].attributes["DICOM.PatientID"] == "P001"
    assert sorted(study.attributes["DICOM.StudyInstanceUID"] for study in tree[0].studies) == sorted(
        info["study_uid"] for info in written.values())
    assert sorted(node for study in tree[0].studies for node in study.nodes) == ["baseline", "follow-up"]
