"""Box codecs: round trips, hand-computed formats, parse never raises, the registry.

The real-world output quirks table is in ``test_codec_quirks.py``.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ricl.boxes.codecs import CODECS, BoxCodec, ParseResult, get_codec
from ricl.boxes.codecs.qwen25vl import Qwen25VLCodec
from ricl.boxes.transforms import center_crop, letterbox
from ricl.errors import UnknownNameError
from ricl.types import Box

from .strategies import boxes

ALL = CODECS.names()
SIZE = st.tuples(st.integers(64, 4096), st.integers(64, 4096))


_UNIT = {
    "chexagent": 1e-2,
    "maira2": 1e-2,
    "json": 1e-4,
    "paligemma": 1 / 1023,  # big_vision: round(v * 1023), read back as / 1023
    "florence2": 1e-3,  # 1000 bins read back as their centres
    "deepseekvl2": 1 / 999,
    "kosmos2": 1 / 32,  # one patch of the 32 x 32 grid
    "cure": 1e-2,  # two decimals of centre and size
}
# how far a round trip may move a coordinate, in units: half a unit (rounding), except CURE,
# whose corners are centre -/+ size/2 (both rounded) kept on the image: up to one unit
_ERROR_IN_UNITS = {"cure": 1.0}


def _units(codec: BoxCodec, size: tuple[int, int]) -> tuple[float, float]:
    """One quantization unit of the codec, as a fraction of its model frame (x, y)."""
    if isinstance(codec, Qwen25VLCodec):
        w, h = codec.resized_size(size)
        return 1 / w, 1 / h
    unit = _UNIT.get(codec.name, 1e-3)
    return unit, unit


def _framed(codec: BoxCodec, box: Box, size: tuple[int, int]) -> Box | None:
    """``box`` in the codec's model frame (the square for letterbox / centre crop)."""
    t = codec.image_transform(size)
    return box if t is None else t.box_to_square(box)


def _same_multiset(got: list[Box], want: list[Box], tol: tuple[float, float]) -> bool:
    if len(got) != len(want):
        return False
    tx, ty = tol
    for perm in itertools.permutations(got):
        if all(
            abs(a.x_min - b.x_min) <= tx
            and abs(a.x_max - b.x_max) <= tx
            and abs(a.y_min - b.y_min) <= ty
            and abs(a.y_max - b.y_max) <= ty
            for a, b in zip(perm, want, strict=True)
        ):
            return True
    return False


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=SIZE)
def test_round_trip(name: str, data: st.DataObject, size: tuple[int, int]) -> None:
    codec = get_codec(name)
    ux, uy = _units(codec, size)

    def wide_enough(b: Box) -> bool:  # quantization cannot collapse or widen it
        f = _framed(codec, b, size)
        return f is not None and f.width >= 2 * ux and f.height >= 2 * uy

    drawn = data.draw(st.lists(boxes().filter(wide_enough), max_size=4))
    text = codec.format(drawn, image_size=size, phrase="left (basal) [effusion]")
    res = codec.parse(text, image_size=size, phrase="left (basal) [effusion]")
    assert res.raw == text
    assert res.status == ("ok" if drawn else "empty"), res
    assert (res.n_repaired, res.n_dropped) == (0, 0)
    # compare in the model frame: rounding is half a unit there (maira2: up to half a bin)
    want = [_framed(codec, b, size) for b in drawn]
    got = [_framed(codec, b, size) for b in res.boxes]
    assert all(g is not None for g in got)
    k = _ERROR_IN_UNITS.get(name, 0.5)
    tol = (ux * k + 1e-9, uy * k + 1e-9)
    assert _same_multiset(got, want, tol), (text, drawn, res.boxes)  # type: ignore[arg-type]
    # formatting is canonical: the parsed boxes format to the same text
    assert codec.format(res.boxes, image_size=size, phrase="left (basal) [effusion]") == text


@pytest.mark.parametrize("name", ALL)
def test_no_box_round_trip(name: str) -> None:
    codec = get_codec(name)
    text = codec.format([], image_size=(640, 480), phrase="pneumothorax")
    assert text == codec.no_box_answer
    assert codec.parse(text, image_size=(640, 480)).status == "empty"


# ---------------------------------------------------------------------------- exact formats

BOX = Box(0.1, 0.2, 0.5, 0.6)  # on a 1000 x 500 image: pixels (100, 100) - (500, 300)
SIZE_1000x500 = (1000, 500)
SIZE_1000x1000 = (1000, 1000)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "qwen2vl",
            (
                "<|object_ref_start|>effusion<|object_ref_end|>"
                "<|box_start|>(100,200),(500,600)<|box_end|>"
            ),
        ),
        # 0-1000 relative, x first
        ("qwen3vl", '[{"bbox_2d": [100, 200, 500, 600], "label": "effusion"}]'),
        ("internvl", "<ref>effusion</ref><box>[[100, 200, 500, 600]]</box>"),
        ("chexagent", "<|ref|>effusion<|/ref|><|box|>(10,20),(50,60)<|/box|>"),
        ("json", "[[0.1, 0.2, 0.5, 0.6]]"),
        # letterbox 1000x500 -> 896: scale 0.896, content 896x448, 224 px padding on top, so
        # y 0.2 -> (100 * 0.896 + 224) / 896 = 0.35 and y 0.6 -> (300 * 0.896 + 224) / 896 = 0.55;
        # written y first: [y0, x0, y1, x1]
        ("medgemma", '[{"box_2d": [350, 100, 550, 500], "label": "effusion"}]'),
        # letterbox -> 384: content 384x192, 96 px padding on top: same 0.35 / 0.55
        ("lofi", "```\n[[100,350,500,550]]\n```"),
        ("glm45v", "<|begin_of_box|>[100, 200, 500, 600]<|end_of_box|>"),
        ("minicpmv", "<ref>effusion</ref><box>100 200 500 600</box>"),
        # centre (0.3, 0.4), size (0.4, 0.4)
        ("cure", "effusion: [0.30,0.40,0.40,0.40]"),
    ],
)
def test_exact_format(name: str, expected: str) -> None:
    codec = get_codec(name)
    assert codec.format([BOX], image_size=SIZE_1000x500, phrase="effusion") == expected
    res = codec.parse(expected, image_size=SIZE_1000x500)
    assert res.status == "ok"
    assert res.boxes[0].to_list() == pytest.approx(BOX.to_list(), abs=1e-9)


@pytest.mark.parametrize(
    ("name", "expected", "back"),
    [
        # y first; round(v * 1023): y 204.6 -> 205, x 102.3 -> 102, y 613.8 -> 614,
        # x 511.5 -> 512 (half to even); read back as / 1023
        (
            "paligemma",
            "<loc0205><loc0102><loc0614><loc0512> effusion",
            [102 / 1023, 205 / 1023, 512 / 1023, 614 / 1023],
        ),
        # floor(v * 1000) = 100, 200, 500, 600; read back as bin centres (b + 0.5) / 1000
        (
            "florence2",
            "effusion<loc_100><loc_200><loc_500><loc_600>",
            [0.1005, 0.2005, 0.5005, 0.6005],
        ),
        # round(v * 999): 99.9 -> 100, 199.8 -> 200, 499.5 -> 500 (half to even), 599.4 -> 599
        (
            "deepseekvl2",
            "<|ref|>effusion<|/ref|><|det|>[[100, 200, 500, 599]]<|/det|>",
            [100 / 999, 200 / 999, 500 / 999, 599 / 999],
        ),
        # 32 x 32 grid: top-left col floor(3.2) = 3, row floor(6.4) = 6 -> 6 * 32 + 3 = 195;
        # bottom-right col ceil(16 - 1) = 15, row ceil(19.2 - 1) = 19 -> 19 * 32 + 15 = 623;
        # different rows and columns: read back as patch centres (i + 0.5) / 32
        (
            "kosmos2",
            "<phrase>effusion</phrase><object><patch_index_0195><patch_index_0623></object>",
            [3.5 / 32, 6.5 / 32, 15.5 / 32, 19.5 / 32],
        ),
    ],
)
def test_exact_format_binned(name: str, expected: str, back: list[float]) -> None:
    codec = get_codec(name)
    assert codec.format([BOX], image_size=SIZE_1000x500, phrase="effusion") == expected
    res = codec.parse(expected, image_size=SIZE_1000x500)
    assert (res.status, res.n_repaired) == ("ok", 0)
    assert res.boxes[0].to_list() == pytest.approx(back, abs=1e-12)


def test_kosmos2_matches_transformers_example() -> None:
    # transformers' Kosmos-2 docs: "<patch_index_0044><patch_index_0863>" is the snowman at
    # (0.390625, 0.046875, 0.984375, 0.828125): patch 44 = row 1, col 12 -> centre (12.5/32,
    # 1.5/32); patch 863 = row 26, col 31 -> centre (31.5/32, 26.5/32)
    codec = get_codec("kosmos2")
    snowman = Box(0.390625, 0.046875, 0.984375, 0.828125)
    text = "<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object>"
    assert codec.format([snowman], image_size=(640, 480), phrase=" a snowman") == text
    assert codec.parse(text, image_size=(640, 480)).boxes == (snowman,)
    # a box within one row reads as patch edges: row 1, cols 3..9 -> x 3/32..10/32, y 1/32..2/32
    text = "<object><patch_index_0035><patch_index_0041></object>"
    res = codec.parse(text, image_size=SIZE_1000x1000)
    assert res.boxes[0].to_list() == [3 / 32, 1 / 32, 10 / 32, 2 / 32]


def test_kosmos2_is_transformers_arithmetic() -> None:
    from transformers.models.kosmos2.processing_kosmos2 import (
        coordinate_to_patch_index,
        patch_index_to_coordinate,
    )

    codec = get_codec("kosmos2")
    corners = itertools.product([0.0, 0.03, 0.5], [0.0, 0.4], [0.51, 0.77, 1.0], [0.45, 1.0])
    for x0, y0, x1, y1 in corners:
        ul, lr = coordinate_to_patch_index((x0, y0, x1, y1), 32)
        text = codec.format([Box(x0, y0, x1, y1)], image_size=SIZE_1000x1000)
        assert text == f"<object><patch_index_{ul:04d}><patch_index_{lr:04d}></object>"
        got = codec.parse(text, image_size=SIZE_1000x1000).boxes[0].to_list()
        assert got == pytest.approx(list(patch_index_to_coordinate(ul, lr, 32)), abs=1e-12)
    for ul, lr in [(0, 0), (35, 41), (35, 995), (44, 863)]:  # same patch, row, column; none
        text = f"<object><patch_index_{ul:04d}><patch_index_{lr:04d}></object>"
        got = codec.parse(text, image_size=SIZE_1000x1000)
        assert got.boxes[0].to_list() == pytest.approx(list(patch_index_to_coordinate(ul, lr, 32)))


def test_florence2_is_transformers_post_processor() -> None:
    import torch
    from transformers.models.florence2.processing_florence2 import Florence2PostProcessor

    post = Florence2PostProcessor(config=None, tokenizer=SimpleNamespace(all_special_tokens=[]))
    codec = get_codec("florence2")
    size = (1000, 1000)  # integer pixels on a 1000-pixel side are exact in both
    for box_px in [(100, 200, 500, 600), (0, 0, 999, 1000), (12, 345, 678, 901), (5, 7, 9, 13)]:
        (want,) = post.quantize(torch.tensor([box_px], dtype=torch.float64), size).tolist()
        text = codec.format([Box(*(v / 1000 for v in box_px))], image_size=size)
        assert text == "".join(f"<loc_{b}>" for b in want)
        # dequantize gives pixels (b + 0.5) * 2 on a 2000-pixel side: exact integers
        (px,) = post.dequantize(torch.tensor([want]), (2000, 2000)).tolist()
        got = codec.parse(text, image_size=size).boxes[0].to_list()
        assert [v * 2000 for v in got] == pytest.approx(px)


@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("paligemma", "<loc0205><loc0102><loc06"),
        ("florence2", "effusion<loc_100><loc_200><loc_5"),
        ("deepseekvl2", "<|ref|>effusion<|/ref|><|det|>[[100, 200, 5"),
        ("glm45v", "<|begin_of_box|>[100, 20"),
        ("minicpmv", "<ref>effusion</ref><box>100 200 5"),
        ("kosmos2", "<phrase>effusion</phrase><object><patch_index_0195><patch_ind"),
        ("cure", "effusion: [0.30,0.4"),
    ],
)
def test_truncated_answer_says_so(name: str, cut: str) -> None:
    res = get_codec(name).parse(cut, image_size=SIZE_1000x1000)
    assert (res.status, res.error, res.boxes) == ("parse_error", "truncated box", ())


def test_cure_keeps_corners_on_the_image() -> None:
    codec = get_codec("cure")
    # x 0..0.33: the centre 0.165 rounded half to even (0.16) with the width 0.33 would put
    # x0 at -0.005 (a clip, counted as a repair); 0.17 keeps it at +0.005, half a unit off
    text = codec.format([Box(0.0, 0.2, 0.33, 0.6)], image_size=SIZE_1000x1000)
    assert text == "[0.17,0.40,0.33,0.40]"
    res = codec.parse(text, image_size=SIZE_1000x1000)
    assert res.n_repaired == 0
    assert res.boxes[0].to_list() == pytest.approx([0.005, 0.2, 0.335, 0.6])


def test_qwen25vl_exact_format_in_resized_frame() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    codec = get_codec("qwen25vl")
    # 1000x500: round(1000 / 28) * 28 = 1008, round(500 / 28) * 28 = 504; 1008 * 504 pixels
    # lie within [56*56, 28*28*1280], so no rescale
    assert codec.resized_size(SIZE_1000x500) == (1008, 504)
    assert smart_resize(500, 1000) == (504, 1008)
    # 0.1 * 1008 = 100.8 -> 101, 0.2 * 504 = 100.8 -> 101, 0.5 * 1008 = 504, 0.6 * 504 = 302.4
    text = codec.format([BOX], image_size=SIZE_1000x500, phrase="effusion")
    assert text == '[{"bbox_2d": [101, 101, 504, 302], "label": "effusion"}]'
    back = codec.parse(text, image_size=SIZE_1000x500).boxes[0]
    assert back.to_list() == pytest.approx([101 / 1008, 101 / 504, 504 / 1008, 302 / 504])


@pytest.mark.parametrize("size", [(1000, 500), (3000, 2000), (200, 6000), (64, 64), (5000, 5000)])
def test_qwen25vl_resized_size_is_transformers_rule(size: tuple[int, int]) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    codec = get_codec("qwen25vl", max_pixels=512 * 28 * 28)
    h, w = smart_resize(size[1], size[0], factor=28, min_pixels=56 * 56, max_pixels=512 * 28 * 28)
    assert codec.resized_size(size) == (w, h)


def test_qwen25vl_exemplar_uses_its_own_frame() -> None:
    codec = get_codec("qwen25vl")
    small = codec.format([BOX], image_size=(500, 250), phrase="x")
    large = codec.format([BOX], image_size=(3000, 1500), phrase="x")
    assert small != large  # same normalized box, different resized frames
    for text, size in [(small, (500, 250)), (large, (3000, 1500))]:
        got = codec.parse(text, image_size=size).boxes[0]
        assert got.to_list() == pytest.approx(BOX.to_list(), abs=2 / 500)


def test_maira2_exact_format_on_centre_crop() -> None:
    codec = get_codec("maira2")
    assert codec.image_transform(SIZE_1000x500) == center_crop(1000, 500, 518)
    # the crop is x 250..750 of the 1000x500 image: x 312.5 -> (312.5 - 250) / 500 = 0.125 ->
    # bin 12; x 612.5 -> 0.725 -> bin 72; y 0.255 -> bin 25; y 0.755 -> bin 75
    box = Box(0.3125, 0.255, 0.6125, 0.755)
    text = codec.format([box], image_size=SIZE_1000x500, phrase="effusion")
    assert text == "<obj>effusion<box><x12><y25><x72><y75></box></obj>"
    # bins read back as their centres: 12 -> 0.125 -> x 312.5 px, 72 -> 0.725 -> 612.5 px
    back = codec.parse(text, image_size=SIZE_1000x500).boxes[0]
    assert back.to_list() == pytest.approx(box.to_list())


def test_maira2_drops_boxes_outside_the_crop_and_clips_partial_ones() -> None:
    codec = get_codec("maira2")
    outside = Box(0.0, 0.1, 0.2, 0.5)  # x 0..200 px: left of the crop (250..750)
    partial = Box(0.2, 0.1, 0.5, 0.5)  # x 200..500 px: cut to 250..500
    assert codec.format([outside], image_size=SIZE_1000x500) == codec.no_box_answer
    text = codec.format([outside, partial], image_size=SIZE_1000x500)
    assert text == "<obj><box><x0><y10><x50><y50></box></obj>"
    (back,) = codec.parse(text, image_size=SIZE_1000x500).boxes
    assert back.x_min >= 0.25


def test_medgemma_letterbox_and_padding() -> None:
    codec = get_codec("medgemma", side=448)
    assert codec.image_transform(SIZE_1000x500) == letterbox(1000, 500, 448)
    # content y spans 250..750 of the square; a box reaching into the padding is cut to it
    res = codec.parse('[{"box_2d": [100, 0, 800, 1000]}]', image_size=SIZE_1000x500)
    assert res.status == "ok" and res.n_repaired == 0
    assert res.boxes[0].to_list() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    # a box entirely on the padding is dropped
    res = codec.parse('[{"box_2d": [0, 0, 200, 1000]}]', image_size=SIZE_1000x500)
    assert (res.status, res.n_dropped) == ("parse_error", 1)


def test_several_boxes_are_sorted_and_grouped() -> None:
    b2 = Box(0.05, 0.5, 0.2, 0.9)
    size = (1000, 1000)
    assert get_codec("qwen2vl").format([BOX, b2], image_size=size, phrase="a") == (
        "<|object_ref_start|>a<|object_ref_end|>"
        "<|box_start|>(50,500),(200,900)<|box_end|><|box_start|>(100,200),(500,600)<|box_end|>"
    )
    assert get_codec("internvl").format([BOX, b2], image_size=size, phrase="a") == (
        "<ref>a</ref><box>[[50, 500, 200, 900], [100, 200, 500, 600]]</box>"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # b2: y 511.5 -> 512 (half to even), x 51.15 -> 51, y 920.7 -> 921, x 204.6 -> 205
        (
            "paligemma",
            "<loc0512><loc0051><loc0921><loc0205> a ; <loc0205><loc0102><loc0614><loc0512> a",
        ),
        ("florence2", "a<loc_50><loc_500><loc_200><loc_900><loc_100><loc_200><loc_500><loc_600>"),
        # b2: 49.95 -> 50, 499.5 -> 500, 199.8 -> 200, 899.1 -> 899
        (
            "deepseekvl2",
            "<|ref|>a<|/ref|><|det|>[[50, 500, 200, 899], [100, 200, 500, 599]]<|/det|>",
        ),
        ("glm45v", "<|begin_of_box|>[[50, 500, 200, 900], [100, 200, 500, 600]]<|end_of_box|>"),
        ("minicpmv", "<ref>a</ref><box>50 500 200 900</box><box>100 200 500 600</box>"),
        # b2: cols floor(1.6) = 1 .. ceil(6.4 - 1) = 6, rows 16 .. ceil(28.8 - 1) = 28
        (
            "kosmos2",
            (
                "<phrase>a</phrase><object><patch_index_0513><patch_index_0902>"
                "</delimiter_of_multi_objects/><patch_index_0195><patch_index_0623></object>"
            ),
        ),
        # b2: centre x 0.125 (0.12 and 0.13 equally close: the smaller one), width 0.15
        ("cure", "a: [0.12,0.70,0.15,0.40] [0.30,0.40,0.40,0.40]"),
    ],
)
def test_several_boxes_new_families(name: str, expected: str) -> None:
    codec = get_codec(name)
    b2 = Box(0.05, 0.5, 0.2, 0.9)
    assert codec.format([BOX, b2], image_size=SIZE_1000x1000, phrase="a") == expected
    assert codec.parse(expected, image_size=SIZE_1000x1000).status == "ok"
    assert len(codec.parse(expected, image_size=SIZE_1000x1000).boxes) == 2


def test_format_widens_degenerate_boxes() -> None:
    thin = Box(0.5, 0.1, 0.5001, 0.2)  # rounds to x 500..500 on 0-1000
    assert get_codec("qwen3vl").format([thin], image_size=(100, 100)) == (
        '[{"bbox_2d": [500, 100, 501, 200], "label": ""}]'
    )


def test_format_rejects_bad_input() -> None:
    codec = get_codec("qwen2vl")
    with pytest.raises(ValueError, match="image_size"):
        codec.format([BOX], image_size=(0, 10))
    with pytest.raises(TypeError, match="Box"):
        codec.format([(0.1, 0.2, 0.3, 0.4)], image_size=(10, 10))  # type: ignore[list-item]


def test_lofi_format_box_answer_delegates_to_codec() -> None:
    from ricl.boxes.codecs.lofi import format_box_ints

    boxes = [(0.5, 0.2, 0.7, 0.4), (0.25, 0.3, 0.25, 1.2)]
    assert format_box_ints(boxes) == "[[250,300,251,1000],[500,200,700,400]]"


# ---------------------------------------------------------------------------- never raises


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=150, deadline=None)
@given(text=st.text(), size=SIZE)
def test_parse_never_raises(name: str, text: str, size: tuple[int, int]) -> None:
    res = get_codec(name).parse(text, image_size=size)
    assert isinstance(res, ParseResult) and res.raw == text
    assert (res.status == "ok") == bool(res.boxes)
    assert all(isinstance(b, Box) for b in res.boxes)


_TOKENS = st.sampled_from(
    [
        "<|box_start|>", "<|box_end|>", "(", ")", ",", "[", "]", "{", "}", '"bbox_2d"', ":",
        '"box_2d"', "<box>", "</box>", "<x5>", "<y9>", "<|box|>", "<|/box|>", "```", "1000",
        "-3", "512.0", "1e999", "nan", " ", "\n", "'", "no", "none",
        "<loc0512>", "<loc1023>", "<loc_512>", "<|det|>", "<|/det|>", "<|begin_of_box|>",
        "<|end_of_box|>", "</think>", "<object>", "</object>", "<patch_index_0044>",
        "<patch_index_9999>", "</delimiter_of_multi_objects/>", ";", "0.52",
    ]
)  # fmt: skip


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=150, deadline=None)
@given(parts=st.lists(_TOKENS, max_size=40), size=SIZE)
def test_parse_never_raises_on_syntax_soup(
    name: str, parts: list[str], size: tuple[int, int]
) -> None:
    text = "".join(parts)
    res = get_codec(name).parse(text, image_size=size)
    assert res.raw == text and (res.status == "ok") == bool(res.boxes)


@pytest.mark.parametrize("name", ALL)
def test_parse_bad_image_size_is_parse_error(name: str) -> None:
    res = get_codec(name).parse("[]", image_size=(0, 5))
    assert res.status == "parse_error" and res.error and "image_size" in res.error


# ---------------------------------------------------------------------------- registry


def test_registry_lists_every_codec() -> None:
    assert ALL == sorted(
        ["chexagent", "cure", "deepseekvl2", "florence2", "glm45v", "internvl", "json",
         "kosmos2", "lofi", "maira2", "medgemma", "minicpmv", "paligemma", "qwen25vl",
         "qwen2vl", "qwen3vl"]
    )  # fmt: skip
    for name in ALL:
        codec = get_codec(name)
        assert codec.name == name
        assert codec.description and "\n" not in codec.description
        assert codec.format_hint.endswith(".") and "absent" in codec.format_hint


def test_get_codec_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="qwen2vl") as info:
        get_codec("qwen2-vl")
    assert "Did you mean" in str(info.value)


def test_get_codec_options() -> None:
    assert get_codec("medgemma", side=448).image_transform((10, 20)).side == 448
    with pytest.raises(TypeError, match="'sid'.*Did you mean 'side'.*Accepted options: side"):
        get_codec("lofi", sid=384)
    with pytest.raises(TypeError, match="Accepted options: none"):
        get_codec("qwen2vl", side=3)
    with pytest.raises(ValueError, match="side must be a positive integer"):
        get_codec("maira2", side=0)
    with pytest.raises(ValueError, match="min_pixels"):
        get_codec("qwen25vl", min_pixels=10, max_pixels=5)


def test_import_is_light() -> None:
    code = (
        "import sys, ricl.boxes.codecs as c; [c.get_codec(n) for n in c.CODECS.names()]; "
        "print(sorted(m for m in ('torch', 'transformers', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
