"""Lesion tracking on synthetic scans with known truth: moved + deformed follow-up, a shrinking
lesion, a stable one, one that vanishes, one that splits, two that merge and a new one."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from mrml_helpers import rotation

from DTTLib.errors import InputError
from DTTLib.imaging import ImageVolume
from DTTLib.imaging.io import sitk_to_volume, volume_to_sitk
from DTTLib.tracking import (
    IdentityGraph,
    LesionObservation,
    Override,
    RegistrationResult,
    TimepointLesions,
    embedding_cosine,
    match_pair,
    observation_from_mask,
    track_timepoints,
)

SHAPE = (32, 64, 64)  # k, j, i
SPACING = (2.0, 2.0, 2.0)
ORIGIN = (-64.0, -64.0, -32.0)


def _grid():
    k, j, i = np.indices(SHAPE, dtype=float)
    # RAS of voxel centres (identity direction)
    return ORIGIN[0] + i * SPACING[0], ORIGIN[1] + j * SPACING[1], ORIGIN[2] + k * SPACING[2]


def _ball(center, radii):
    x, y, z = _grid()
    return (((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
            + ((z - center[2]) / radii[2]) ** 2) <= 1.0


def _anatomy(lesions: dict[str, np.ndarray]) -> np.ndarray:
    """Textured body (so mutual information has something to lock on) plus bright lesions."""
    x, y, z = _grid()
    body = _ball((0, 0, 0), (58, 50, 28)).astype(float) * 300
    body += 120 * np.sin(x / 9.0) * np.cos(y / 13.0) + 80 * np.cos(z / 7.0 + x / 20.0)
    body += 200 * _ball((-20, 15, 0), (15, 10, 12)) + 150 * _ball((25, -20, 5), (10, 14, 9))
    for m in lesions.values():
        body[m] = 900
    return body.astype(np.float32)


# truth: lesion geometry in the baseline frame at each timepoint
BASE = {"A": ((-30, -25, -5), (8, 7, 6)), "B": ((30, 25, 5), (6, 6, 6)), "C": ((-30, 30, 8), (5, 5, 5)),
        "D": ((10, -5, -8), (14, 6, 6)), "E1": ((25, 0, 12), (5, 5, 4)), "E2": ((37, 0, 12), (5, 5, 4))}
FOLLOW = {"a": ((-30, -25, -5), (6, 5, 4)), "b": ((30, 25, 5), (6, 6, 6)),  # C vanished
          "d1": ((2, -5, -8), (5, 5, 5)), "d2": ((19, -5, -8), (5, 5, 5)),  # D split
          "e": ((31, 0, 12), (12, 6, 5)),  # E1 + E2 merged
          "n": ((-8, 35, -12), (5, 5, 5))}  # new


def _truth_transform() -> RegistrationResult:
    m = np.eye(4)
    m[:3, :3] = rotation(2.0, -3.0, 5.0)
    m[:3, 3] = (6.0, -4.0, 3.0)
    return RegistrationResult(m)  # baseline point -> follow-up point


def _deform(image: sitk.Image, interp) -> sitk.Image:
    """Follow-up frame: known affine motion composed with a smooth ~1 mm deformation."""
    disp = np.zeros(SHAPE + (3,))
    x, y, z = _grid()
    disp[..., 0] = 1.0 * np.sin(y / 25.0)
    disp[..., 1] = 0.8 * np.cos(x / 30.0)
    field = sitk.GetImageFromArray(disp, isVector=True)
    field.CopyInformation(image)
    inverse_motion = RegistrationResult(np.linalg.inv(_truth_transform().matrix_ras)).sitk_transform()
    composite = sitk.CompositeTransform([inverse_motion, sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))])
    return sitk.Resample(image, image, composite, interp, 0.0)


@pytest.fixture(scope="module")
def case():
    base_masks = {k: _ball(*v) for k, v in BASE.items()}
    follow_masks_base_frame = {k: _ball(*v) for k, v in FOLLOW.items()}
    base = ImageVolume(_anatomy(base_masks), SPACING, ORIGIN, name="t0")
    ref = volume_to_sitk(base)
    follow_img = _deform(volume_to_sitk(base.with_array(_anatomy(follow_masks_base_frame))), sitk.sitkLinear)
    follow = sitk_to_volume(follow_img, "t1")
    follow_masks = {}
    for k, mk in follow_masks_base_frame.items():
        img = volume_to_sitk(base.with_array(mk.astype(np.uint8)))
        follow_masks[k] = sitk.GetArrayFromImage(_deform(img, sitk.sitkNearestNeighbor)) > 0
    assert ref.GetSize() == follow_img.GetSize()
    obs0 = [observation_from_mask(k, 0, m, base) for k, m in base_masks.items()]
    obs1 = [observation_from_mask(k, 1, m, follow) for k, m in follow_masks.items()]
    graph = track_timepoints([TimepointLesions(0, obs0, base), TimepointLesions(56, obs1, follow)], "Synthetic")
    return graph, obs0, obs1


def test_registration_recovers_the_known_motion(case):
    graph, obs0, _ = case
    found = RegistrationResult(np.array(graph.registrations[0]["matrix_ras"]))
    pts = [o.centroid_ras for o in obs0]
    err = np.linalg.norm(found.to_followup(pts) - _truth_transform().to_followup(pts), axis=1)
    assert err.max() < 2.0, err  # ~1 mm deformation is not modelled by an affine map


def test_links_and_events_match_the_truth(case):
    graph, _, _ = case
    pairs = {(lk.source[1], lk.target[1]): lk for lk in graph.links}
    assert set(pairs) == {("A", "a"), ("B", "b"), ("D", "d1"), ("D", "d2"), ("E1", "e"), ("E2", "e")}
    assert pairs[("A", "a")].method == pairs[("B", "b")].method == "registration+hungarian"
    assert pairs[("B", "b")].distance_mm < 2.0 and pairs[("B", "b")].confidence > 0.85
    events = {(e.kind, tuple(s[1] for s in e.sources), tuple(sorted(t[1] for t in e.targets))) for e in graph.events}
    assert ("disappeared", ("C",), ()) in events
    assert ("new", (), ("n",)) in events
    assert ("split", ("D",), ("d1", "d2")) in events
    assert any(k == "merged" and set(s) == {"E1", "E2"} and t == ("e",) for k, s, t in events)
    assert len(graph.events) == 4
    tracks = graph.tracks()
    assert tracks["A"] == [(0, "A"), (1, "a")] and tracks["B"] == [(0, "B"), (1, "b")]
    assert tracks["C"] == [(0, "C")] and tracks["n"] == [(1, "n")]


def test_overrides_need_a_reason_and_are_recorded(case):
    graph = IdentityGraph.from_dict(case[0].to_dict())
    assert graph.to_dict() == case[0].to_dict()  # JSON round trip
    with pytest.raises(InputError, match="no reason"):
        graph.apply_override(Override("reassign", [(0, "C")], [(1, "n")], "  "))
    graph.apply_override(Override("reassign", [(0, "C")], [(1, "n")], "same lesion; seen on the prior CT", "dr x"))
    assert graph.tracks()["C"] == [(0, "C"), (1, "n")]
    assert [(e.kind) for e in graph.events if (1, "n") in e.targets or (0, "C") in e.sources] == []
    assert graph.overrides[-1].reason == "same lesion; seen on the prior CT"
    assert graph.links_to((1, "n"))[0].method == "user"
    graph.apply_override(Override("new", [], [(1, "b")], "different lesion on second look"))
    assert graph.tracks()["B"] == [(0, "B")] and not graph.links_to((1, "b"))
    with pytest.raises(InputError, match="not in the identity graph"):
        graph.apply_override(Override("merge", [(0, "A"), (0, "Z")], [(1, "a")], "typo"))


def _obs(lid, t, c, emb):
    return LesionObservation(lid, t, c, embedding=np.asarray(emb, float))


def test_ambiguous_zone_uses_appearance():
    early = [_obs("A", 0, (0, 0, 0), [1, 0, 0]), _obs("B", 0, (40, 0, 0), [0, 1, 0])]
    # 'x' is 14 mm from A and looks like A; 'y' is 15 mm from B but looks nothing like it
    late = [_obs("x", 1, (14, 0, 0), [0.9, 0.1, 0]), _obs("y", 1, (40, 15, 0), [-1, 0, 0])]
    pm = match_pair(early, late, similarity=embedding_cosine)
    assert [(lk.source[1], lk.target[1], lk.method) for lk in pm.links] == [("A", "x", "appearance")]
    assert pm.links[0].similarity == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert {(e.kind, (e.sources or e.targets)[0][1]) for e in pm.events} == {("disappeared", "B"), ("new", "y")}
    # beyond the 20 mm cap nothing links, however similar
    far = match_pair(early, [_obs("z", 1, (0, 21, 0), [1, 0, 0])], similarity=embedding_cosine)
    assert far.links == [] and len(far.events) == 3


def test_hungarian_prefers_the_global_optimum():
    # greedy nearest-first would pair A-y (4 mm) and leave B-x at 16 mm; optimum is A-x + B-y
    early = [_obs("A", 0, (0, 0, 0), [1, 0]), _obs("B", 0, (10, 0, 0), [1, 0])]
    late = [_obs("x", 1, (-5, 0, 0), [1, 0]), _obs("y", 1, (4, 0, 0), [1, 0])]
    pm = match_pair(early, late, similarity=None)
    assert {(lk.source[1], lk.target[1]) for lk in pm.links} == {("A", "x"), ("B", "y")}
