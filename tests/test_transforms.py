import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ricl.boxes.transforms import SquareTransform, center_crop, letterbox
from ricl.types import Box

from .strategies import boxes


def test_letterbox_records_exact_transform():
    t = letterbox(1000, 500, 100)
    assert (t.scale_x, t.scale_y, t.offset_x, t.offset_y) == (0.1, 0.1, 0.0, 25.0)
    assert t.content_box() == Box(0.0, 0.25, 1.0, 0.75)
    b = t.box_to_square(Box(0.5, 0.5, 1.0, 1.0))
    assert b.to_list() == pytest.approx([0.5, 0.5, 1.0, 0.75])
    assert SquareTransform.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match="unknown"):
        SquareTransform.from_dict({**t.to_dict(), "bogus": 1})


def test_letterbox_pixels_agree_with_box_mapping():
    # a bright rectangle must land exactly where the mapped box says
    w, h, side = 300, 200, 150
    arr = np.zeros((h, w), np.uint8)
    arr[50:150, 60:180] = 255
    box = Box.from_pixels(60, 50, 180, 150, w, h)
    t = letterbox(w, h, side)
    out = np.asarray(t.apply(Image.fromarray(arr)))
    assert out.shape == (side, side)
    sq = t.box_to_square(box)
    x0, y0, x1, y1 = (round(v * side) for v in sq.to_list())
    assert out[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].min() > 200
    assert out[: y0 - 1].max() == 0 and out[y1 + 1 :].max() == 0


def test_center_crop_cuts_and_maps():
    t = center_crop(400, 200, 100)  # central 200x200 square from x=100
    assert t.box_to_square(Box(0.0, 0.0, 0.2, 1.0)) is None  # entirely left of the crop
    b = t.box_to_square(Box(0.0, 0.0, 0.5, 1.0))
    assert b.to_list() == pytest.approx([0.0, 0.0, 0.5, 1.0])
    back = t.box_from_square(Box(0.0, 0.0, 1.0, 1.0))
    assert back.to_list() == pytest.approx([0.25, 0.0, 0.75, 1.0])
    img = Image.new("L", (400, 200))
    assert t.apply(img).size == (100, 100)


def test_letterbox_from_square_cuts_padding():
    t = letterbox(1000, 500, 100)
    assert t.box_from_square(Box(0.0, 0.0, 1.0, 0.2)) is None  # all on the top pad
    b = t.box_from_square(Box(0.0, 0.0, 1.0, 0.5))
    assert b.to_list() == pytest.approx([0.0, 0.0, 1.0, 0.5])


sizes = st.integers(8, 4000)


@settings(max_examples=300, deadline=None)
@given(sizes, sizes, st.integers(16, 1024), boxes())
def test_letterbox_round_trip(w, h, side, box):
    t = letterbox(w, h, side)
    sq = t.box_to_square(box)
    assert sq is not None
    back = t.box_from_square(sq)
    assert back is not None
    assert back.to_list() == pytest.approx(box.to_list(), abs=1e-9)
    c = t.content_box()
    assert c.x_min <= sq.x_min and sq.x_max <= c.x_max + 1e-12


@settings(max_examples=300, deadline=None)
@given(sizes, sizes, st.integers(16, 1024), boxes())
def test_center_crop_round_trip_inside_crop(w, h, side, sq_box):
    # any box inside the square maps back into the original and forward again exactly
    t = center_crop(w, h, side)
    orig = t.box_from_square(sq_box)
    assert orig is not None
    again = t.box_to_square(orig)
    assert again.to_list() == pytest.approx(sq_box.to_list(), abs=1e-9)
