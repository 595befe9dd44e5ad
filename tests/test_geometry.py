import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ricl.boxes.geometry import box_iou, greedy_match, union_area, union_iou
from ricl.types import Box

from .strategies import boxes


def raster_area(boxes, n=200):
    """Independent check: count covered cells of an n x n grid on dyadic-aligned boxes."""
    hit = 0
    for i, j in itertools.product(range(n), range(n)):
        x, y = (i + 0.5) / n, (j + 0.5) / n
        if any(b.x_min <= x < b.x_max and b.y_min <= y < b.y_max for b in boxes):
            hit += 1
    return hit / (n * n)


def test_union_area_known_cases():
    a = Box(0, 0, 0.4, 0.4)
    b = Box(0.2, 0.2, 0.6, 0.6)
    assert union_area([]) == 0.0
    assert union_area([a]) == pytest.approx(0.16)
    assert union_area([a, b]) == pytest.approx(0.28)
    assert union_area([a, a, a]) == pytest.approx(0.16)  # duplicates count once
    assert union_area([Box(0, 0, 1, 1), a, b]) == pytest.approx(1.0)  # nested
    # three-way overlap with a hole-free cross shape
    h = Box(0.0, 0.4, 1.0, 0.6)
    v = Box(0.4, 0.0, 0.6, 1.0)
    assert union_area([h, v]) == pytest.approx(0.2 + 0.2 - 0.04)


def test_union_area_matches_rasterization_on_grid_boxes():
    boxes = [
        Box(0.1, 0.1, 0.5, 0.3),
        Box(0.3, 0.2, 0.7, 0.9),
        Box(0.6, 0.0, 0.9, 0.25),
        Box(0.15, 0.5, 0.35, 0.95),
    ]
    assert union_area(boxes) == pytest.approx(raster_area(boxes), abs=1e-9)


def test_box_iou_and_union_iou():
    assert box_iou(Box(0, 0, 0.5, 0.5), Box(0.5, 0.5, 1, 1)) == 0.0
    assert box_iou(Box(0, 0, 0.5, 0.5), Box(0, 0, 0.25, 0.5)) == pytest.approx(0.5)
    gold = [Box(0, 0, 0.4, 0.4), Box(0.2, 0.2, 0.6, 0.6)]
    assert union_iou([Box(0, 0, 0.6, 0.6)], gold) == pytest.approx(0.28 / 0.36)
    assert union_iou([], []) == 1.0
    assert union_iou([], gold) == 0.0
    assert union_iou(gold, []) == 0.0


def test_greedy_match_one_to_one_by_descending_iou():
    gold = [Box(0, 0, 0.5, 0.5)]
    preds = [Box(0, 0, 0.5, 0.45), Box(0, 0, 0.5, 0.5)]
    m = greedy_match(preds, gold, threshold=0.5)
    assert [(x.pred_index, x.gold_index) for x in m] == [(1, 0)]
    assert m[0].iou == pytest.approx(1.0)
    # the greedy choice: pred 0 overlaps both golds; best pair first
    gold2 = [Box(0, 0, 0.4, 1), Box(0.4, 0, 0.8, 1)]
    preds2 = [Box(0.05, 0, 0.45, 1), Box(0.4, 0, 0.8, 1)]
    m2 = greedy_match(preds2, gold2, threshold=0.1)
    assert sorted((x.pred_index, x.gold_index) for x in m2) == [(0, 0), (1, 1)]
    assert greedy_match(preds2, gold2, threshold=0.99) == [m2[0]]
    with pytest.raises(ValueError):
        greedy_match(preds, gold, threshold=1.5)


@settings(max_examples=200, deadline=None)
@given(st.lists(boxes(), max_size=6), st.lists(boxes(), max_size=6))
def test_union_properties(a, b):
    ua, ub, uab = union_area(a), union_area(b), union_area(a + b)
    assert uab <= ua + ub + 1e-12
    assert uab >= max(ua, ub) - 1e-12
    assert uab <= 1.0 + 1e-12
    iou = union_iou(a, b)
    assert 0.0 <= iou <= 1.0
    assert iou == pytest.approx(union_iou(b, a), abs=1e-12)
    if a:
        assert union_iou(a, a) == pytest.approx(1.0)
        assert union_iou(a, a + a[:1]) == pytest.approx(1.0)
