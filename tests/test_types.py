import math

import pytest

from ricl.errors import InvalidBoxError
from ricl.types import Box, Prediction, boxes_from_lists


def test_box_accepts_valid_and_stores_floats():
    b = Box(0, 0.25, 1, 0.75)
    assert b.to_list() == [0.0, 0.25, 1.0, 0.75]
    assert isinstance(b.x_min, float)
    assert b.width == 1.0 and b.height == 0.5 and b.area == 0.5
    assert b.center == (0.5, 0.5)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ((0.5, 0.1, 0.4, 0.2), "x_min=0.5 must be < x_max=0.4"),
        ((0.1, 0.3, 0.4, 0.3), "y_min=0.3 must be < y_max=0.3"),
        ((-0.01, 0.1, 0.4, 0.2), "x_min=-0.01 is outside [0, 1]"),
        ((0.1, 0.1, 1.2, 0.2), "x_max=1.2 is outside [0, 1]"),
        ((0.1, math.nan, 0.4, 0.2), "y_min=nan is not finite"),
        ((0.1, 0.1, math.inf, 0.2), "x_max=inf is not finite"),
        ((0.1, "a", 0.4, 0.2), "y_min='a' is not a number"),
    ],
)
def test_box_rejects_bad_values_naming_them(values, needle):
    with pytest.raises(InvalidBoxError) as e:
        Box(*values)
    assert needle in str(e.value)


def test_box_clip_repairs_and_reports():
    b, changed = Box.clip(1.02, 0.5, 0.2, -0.01)
    assert b == Box(0.2, 0.0, 1.0, 0.5)
    assert changed
    b2, changed2 = Box.clip(0.1, 0.2, 0.3, 0.4)
    assert b2 == Box(0.1, 0.2, 0.3, 0.4) and not changed2
    with pytest.raises(InvalidBoxError):
        Box.clip(1.1, 0.1, 1.2, 0.2)  # entirely outside: no area left
    with pytest.raises(InvalidBoxError, match="not finite"):
        Box.clip(float("nan"), 0.1, 0.2, 0.2)


def test_box_pixel_conversions():
    b = Box.from_xywh_pixels(10, 20, 30, 40, width=100, height=200)
    assert b == Box(0.1, 0.1, 0.4, 0.3)
    assert b.to_pixels(100, 200) == pytest.approx((10, 20, 40, 60))
    with pytest.raises(InvalidBoxError, match="4 values"):
        Box.from_list([0.1, 0.2, 0.3])
    assert boxes_from_lists([[0, 0, 1, 1]]) == (Box(0, 0, 1, 1),)


def test_prediction_scores_must_match_boxes():
    with pytest.raises(ValueError, match="2 scores for 1 boxes"):
        Prediction("img", "p", boxes=(Box(0, 0, 1, 1),), scores=(0.1, 0.2))
