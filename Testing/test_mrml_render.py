"""Offscreen slice rendering with Slicer's displayable managers draws what the scene holds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from DTTLib.errors import InputError
from DTTLib.imaging import read_image
from DTTLib.mrml.markups import add_line_node
from DTTLib.mrml.render import SliceView, render_slice_png, render_slice_rgb
from DTTLib.mrml.segmentations import add_segmentation_node, set_segment_mask
from DTTLib.mrml.volumes import add_volume_node


@pytest.fixture
def brain_scene(mrml, brain_pair):
    image = read_image(brain_pair["brain1_image"])
    label = read_image(brain_pair["brain1_label"]).array > 0
    volume = add_volume_node(image, "brain1")
    segmentation = add_segmentation_node(volume, "lesions")
    set_segment_mask(segmentation, label, "Tumor", volume, color=(1.0, 0.3, 0.2))
    k = int(np.argmax(label.sum(axis=(1, 2))))
    j, i = np.nonzero(label[k])
    centre = (image.ijk_to_ras() @ np.array([i.mean(), j.mean(), k, 1.0]))[:3]
    return image, label, volume, segmentation, k, tuple(centre)


def test_segment_overlay_covers_the_label_area(brain_scene):
    image, label, volume, segmentation, k, centre = brain_scene
    view = SliceView(volume, centre, field_of_view_mm=100.0, size_px=(400, 400))
    with_segment = render_slice_rgb(view)
    segmentation.GetDisplayNode().SetVisibility(False)
    without_segment = render_slice_rgb(view)
    changed = np.any(with_segment != without_segment, axis=2)
    mm_per_pixel = 100.0 / 400
    label_area_mm2 = label[k].sum() * image.spacing[0] * image.spacing[1]
    assert changed.sum() * mm_per_pixel**2 == pytest.approx(label_area_mm2, rel=0.05)
    # centred on the lesion: the overlay's centre of mass is near the middle of the picture
    rows, columns = np.nonzero(changed)
    assert abs(rows.mean() - 200) < 20 and abs(columns.mean() - 200) < 20
    # the overlay is reddish (segment colour), not grey
    red, green = with_segment[changed][:, 0].astype(int), with_segment[changed][:, 1].astype(int)
    assert np.median(red - green) > 40


def test_line_markup_is_drawn_and_png_written(brain_scene, tmp_path):
    image, label, volume, segmentation, k, centre = brain_scene
    segmentation.GetDisplayNode().SetVisibility(False)
    view = SliceView(volume, centre, field_of_view_mm=120.0, size_px=(300, 300))
    before = render_slice_rgb(view)
    start = np.array(centre) + (-20.0, 0.0, 0.0)
    add_line_node(tuple(start), tuple(start + (40.0, 0.0, 0.0)), "LD")
    path = render_slice_png(view, tmp_path / "view.png")
    after = np.asarray(Image.open(path).convert("RGB"))
    assert after.shape == (300, 300, 3)
    changed_columns = np.nonzero(np.any(np.any(after != before, axis=2), axis=0))[0]
    # a 40 mm line spans about 100 px at 120 mm / 300 px (plus handles and its label)
    assert changed_columns.max() - changed_columns.min() >= 95


def test_rendering_leaves_no_view_nodes_behind_and_rejects_bad_requests(brain_scene):
    _, _, volume, _, _, centre = brain_scene
    before = volume.GetScene().GetNumberOfNodesByClass("vtkMRMLSliceNode")
    render_slice_rgb(SliceView(volume, centre, orientation="Coronal", size_px=(64, 64)))
    assert volume.GetScene().GetNumberOfNodesByClass("vtkMRMLSliceNode") == before
    with pytest.raises(InputError, match="orientation"):
        render_slice_rgb(SliceView(volume, centre, orientation="Oblique"))


def test_one_renderer_for_many_pictures_draws_what_single_renders_draw(mrml, brain_scene, brain_pair):
    """The report renders every lesion picture through one view: each must equal the picture
    drawn on its own — across volumes, centres, fields of view and visibility changes."""
    from DTTLib.mrml.render import SliceRenderer

    image, label, volume, segmentation, k, centre = brain_scene
    other = add_volume_node(read_image(brain_pair["brain2_image"]), "brain2")
    shifted = tuple(np.array(centre) + (15.0, -10.0, 0.0))
    views = [SliceView(volume, centre, field_of_view_mm=100.0, size_px=(200, 200)),
             SliceView(other, None, size_px=(200, 200)),
             SliceView(volume, shifted, field_of_view_mm=60.0, size_px=(200, 200))]
    slice_nodes = volume.GetScene().GetNumberOfNodesByClass("vtkMRMLSliceNode")
    with SliceRenderer((200, 200), "Axial") as renderer:  # first, on a scene that never rendered
        batch = [renderer.render(view) for view in views]
        segmentation.GetDisplayNode().SetVisibility(False)
        batch_hidden = renderer.render(views[0])
        with pytest.raises(InputError, match="renderer"):
            renderer.render(SliceView(volume, centre, size_px=(100, 100)))
    segmentation.GetDisplayNode().SetVisibility(True)
    singles = [render_slice_rgb(view) for view in views]
    segmentation.GetDisplayNode().SetVisibility(False)
    hidden = render_slice_rgb(views[0])
    # the scan itself is drawn (grey anatomy, not a black background under the overlay)
    grey = np.all(batch_hidden[..., :1] == batch_hidden, axis=2) & (batch_hidden[..., 0] > 30)
    assert grey.mean() > 0.2, grey.mean()
    for single, batched in zip(singles, batch):
        np.testing.assert_array_equal(batched, single)
    np.testing.assert_array_equal(batch_hidden, hidden)
    assert not np.array_equal(singles[0], hidden)  # the overlay was there to compare
    assert volume.GetScene().GetNumberOfNodesByClass("vtkMRMLSliceNode") == slice_nodes
