"""What models really emit: one row per quirk, per codec (see ``ricl.boxes.codecs``).

Every row parses ``raw`` on a 1000 x 1000 image, where the letterbox (medgemma, lofi) and
the centre crop (maira2) are the identity, so expected boxes read directly in 0..1 units
(within 1.5e-3: one paligemma bin, half a florence2 bin).
``expected`` is a list of ``[x0, y0, x1, y1]`` or, where the frame arithmetic is not the
point, the number of boxes.
"""

from __future__ import annotations

import pytest

from ricl.boxes.codecs import get_codec

SIZE = (1000, 1000)
B = [0.1, 0.2, 0.5, 0.6]  # the usual box: (100,200)-(500,600) on 0..1000
M = [0.105, 0.205, 0.505, 0.605]  # maira2 bins 10/20/50/60 read back as bin centres
QB = "<|box_start|>(100,200),(500,600)<|box_end|>"
QR = "<|object_ref_start|>effusion<|object_ref_end|>"
J = '{"bbox_2d": [100, 200, 500, 600], "label": "a"}'  # one qwen3vl object
J_BRACKETS = '{"bbox_2d": [100, 200, 500, 600], "label": "opacity [RUL] (2 cm)"}'
PG = "<loc0205><loc0102><loc0614><loc0512>"  # paligemma, y first: B within a bin (1/1023)
FL = "<loc_100><loc_200><loc_500><loc_600>"  # florence2: B, read as bin centres (+0.0005)
DS = "<|ref|>effusion<|/ref|><|det|>"
GB, GE = "<|begin_of_box|>", "<|end_of_box|>"
KO = "<patch_index_0195><patch_index_0623>"  # kosmos2: cols 3..15, rows 6..19 of 32
K = [3.5 / 32, 6.5 / 32, 15.5 / 32, 19.5 / 32]  # ... read back as patch centres
KD = "</delimiter_of_multi_objects/>"
SNOWMAN = (  # transformers' Kosmos-2 docs example, boxes as the docs give them
    "<grounding> An image of<phrase> a snowman</phrase><object><patch_index_0044>"
    "<patch_index_0863></object> warming himself by<phrase> a fire</phrase><object>"
    "<patch_index_0005><patch_index_0911></object>."
)
SNOWMAN_BOXES = [[0.390625, 0.046875, 0.984375, 0.828125], [0.171875, 0.015625, 0.484375, 0.890625]]

CASES = [
    # name, raw, status, expected boxes or count, n_repaired, n_dropped
    ("qwen2vl", f"Sure. {QR}{QB} Hope it helps!", "ok", [B], 0, 0),
    ("qwen2vl", "<|box_start|>( 100 , 200 ),\n (500,600)\n<|box_end|>", "ok", [B], 0, 0),
    ("qwen2vl", "<|box_start|>(500,600),(100,200)<|box_end|>", "ok", [B], 1, 0),
    ("qwen2vl", "<|box_start|>(100,200),(1003,600)<|box_end|>", "ok", [[0.1, 0.2, 1.0, 0.6]], 1, 0),
    ("qwen2vl", "<|box_start|>(100.0,200.0),(500.0,600.0)<|box_end|>", "ok", [B], 0, 0),
    ("qwen2vl", f"{QB}<|box_start|>(700,80", "ok", [B], 0, 0),  # truncated second box
    ("qwen2vl", "<|box_start|>(100,200),(500,600)", "ok", [B], 0, 0),  # missing close at end
    ("qwen2vl", f"{QR}<|box_start|>(100,2", "parse_error", 0, 0, 0),
    ("qwen2vl", f"<|object_ref_start|>opacity (2 cm) [RUL]<|object_ref_end|>{QB}", "ok", [B], 0, 0),
    ("qwen2vl", f"{QR}{QB}\n{QR}{QB}", "ok", 2, 0, 0),  # several answers
    ("qwen2vl", "<|box_start|>(100,200)<|box_end|>", "parse_error", 0, 0, 1),  # wrong arity
    ("qwen2vl", "effusion(100,200),(500,600)", "ok", [B], 0, 0),  # special tokens skipped
    ("qwen2vl", "effusion (100,200),(500,600) (700,100),(900,300)", "ok", 2, 0, 0),
    ("chexagent", "effusion(10,20),(50,60)", "ok", [B], 0, 0),  # special tokens skipped
    ("qwen2vl", "No pneumothorax is seen.", "empty", 0, 0, 0),
    ("qwen2vl", "Not present.", "empty", 0, 0, 0),
    ("qwen2vl", "The image shows a chest radiograph.", "parse_error", 0, 0, 0),
    ("qwen3vl", f"```json\n[\n  {J},\n]\n```", "ok", [B], 0, 0),  # fence, trailing comma
    ("qwen3vl", "[{'bbox_2d': [100, 200, 500, 600], 'label': 'effusion'}]", "ok", [B], 0, 0),
    ("qwen3vl", f'[{J}, {{"bbox_2d": [700, 7', "ok", [B], 0, 0),  # truncated
    ("qwen3vl", '{"bbox_2d": [100,200,500,600]}\n{"bbox_2d": [600,200,900,600]}', "ok", 2, 0, 0),
    ("qwen3vl", f"Found: [{J_BRACKETS}]. Done", "ok", [B], 0, 0),  # prose, brackets in label
    ("qwen3vl", '[{"bbox_2d": [-3, 200, 500, 600]}]', "ok", [[0.0, 0.2, 0.5, 0.6]], 1, 0),
    ("qwen3vl", '[{"bbox_2d": [100, 200, 100, 600]}]', "parse_error", 0, 0, 1),  # no area
    ("qwen3vl", '[{"bbox_2d": [100, 200, 500]}]', "parse_error", 0, 0, 1),  # wrong arity
    ("qwen3vl", "[100, 200, 500, 600]", "ok", [B], 0, 0),  # a bare box
    ("qwen3vl", "[]", "empty", 0, 0, 0),
    ("qwen3vl", "```json\n[]\n```", "empty", 0, 0, 0),
    ("qwen3vl", f"[{J}", "ok", [B], 0, 0),  # list unclosed
    ("qwen3vl", "There is no pleural effusion in this image.", "empty", 0, 0, 0),
    ("qwen3vl", '[{"bbox_2d": "left lower lobe"}]', "parse_error", 0, 0, 1),
    ("qwen25vl", '```json\n[{"bbox_2d": [98, 196, 490, 588], "label": "x"}]\n```', "ok", [B], 0, 0),
    ("qwen25vl", '[{"bbox_2d": [0, 0, 990, 490]}]', "ok", [[0, 0, 1, 0.5]], 1, 0),  # frame 980
    ("medgemma", '[{"box_2d": [200, 100, 600, 500], "label": "a"}]', "ok", [B], 0, 0),  # y first
    ("medgemma", "There is no evidence of pneumothorax.", "empty", 0, 0, 0),
    ("medgemma", '```json\n[{"box_2d": [200, 100, 600, 500]}, {"box_2d": [2', "ok", [B], 0, 0),
    ("internvl", "<ref>a</ref><box>[[100, 200, 500, 600], [6, 2, 9, 6]]</box>", "ok", 2, 0, 0),
    ("internvl", "<ref>a</ref><box>[[100, 200, 500, 600], [600, 2", "ok", [B], 0, 0),
    ("internvl", "<box>\n[[100,200,\n 500,600]]\n</box>", "ok", [B], 0, 0),
    ("internvl", "<ref>a (left) [b]</ref><box>[[100, 200, 500, 600]]</box>", "ok", [B], 0, 0),
    ("internvl", "<box>[]</box>", "empty", 0, 0, 0),
    ("maira2", "<obj>effusion<box><x10><y20><x50><y60></box></obj>", "ok", [M], 0, 0),
    ("maira2", "<box><x50><y60><x10><y20></box>", "ok", [M], 1, 0),
    ("maira2", "<box><y20><x10><y60><x50></box>", "parse_error", 0, 0, 1),  # y before x
    ("maira2", "<obj>a<box><x10><y20><x50><y60></box><box><x1", "ok", [M], 0, 0),
    ("maira2", "<obj>a<box> <x10> <y20>\n<x50> <y60> </box></obj>", "ok", [M], 0, 0),
    ("chexagent", "<|ref|>a<|/ref|><|box|>(10,20),(50,60)<|/box|>", "ok", [B], 0, 0),
    ("chexagent", "<|box|>(10,20),(101,60)<|/box|>", "ok", [[0.1, 0.2, 1.0, 0.6]], 1, 0),
    ("chexagent", "Finding not visible.", "empty", 0, 0, 0),
    ("lofi", "Answer: [[100,200,500,600]] (done)", "ok", [B], 0, 0),
    ("lofi", "```\n[[100,200,500,600],]\n```", "ok", [B], 0, 0),
    ("lofi", "```\n[]\n```", "empty", 0, 0, 0),
    ("lofi", "[[100,200,500,600],[100,2", "ok", [B], 0, 0),
    ("json", "[[0.6, 0.2, 0.1, 0.6], [0.1, 0.2, 0.5, 0.6]]", "ok", [[0.1, 0.2, 0.6, 0.6], B], 1, 0),
    ("json", "[[0.1, 0.2, 0.5]]", "parse_error", 0, 0, 1),
    ("json", "none", "empty", 0, 0, 0),
    ("json", "No finding", "empty", 0, 0, 0),
    ("json", "", "parse_error", 0, 0, 0),
    ("json", "[[.1, .2, .5, .6]]", "ok", [B], 0, 0),  # not JSON, read by the regex fallback
    # paligemma: <locY0><locX0><locY1><locX1> label, ' ; ' between boxes
    ("paligemma", f"{PG} effusion", "ok", [B], 0, 0),
    ("paligemma", f"{PG} effusion ; <loc0100><loc0600><loc0400><loc0900> effusion", "ok", 2, 0, 0),
    ("paligemma", f"detect effusion\n{PG} left pleural effusion\n", "ok", [B], 0, 0),
    ("paligemma", f"{PG} effusion ; <loc0100><loc06", "ok", [B], 0, 0),  # truncated 2nd box
    ("paligemma", "<loc0205><loc0102><loc06", "parse_error", 0, 0, 0),  # truncated
    ("paligemma", "<loc0614><loc0512><loc0205><loc0102> effusion", "ok", [B], 1, 0),  # swapped
    ("paligemma", "<loc0205><loc0102><loc1100><loc0512>", "ok", [[0.0997, 0.2004, 0.5005, 1.0]], 1, 0),
    ("paligemma", f"{PG}<loc0001> effusion", "ok", [B], 0, 1),  # a 5th token: unusable rest
    ("paligemma", f"{PG} <seg114><seg074> effusion", "ok", [B], 0, 0),  # segment tokens
    ("paligemma", "Not present.", "empty", 0, 0, 0),
    ("paligemma", "No pneumothorax.", "empty", 0, 0, 0),
    ("paligemma", "", "parse_error", 0, 0, 0),
    # florence2: phrase<loc_X0><loc_Y0><loc_X1><loc_Y1>, several boxes back to back
    ("florence2", f"</s><s>effusion{FL}</s>", "ok", [[0.1005, 0.2005, 0.5005, 0.6005]], 0, 0),
    ("florence2", f"effusion{FL}<loc_600><loc_200><loc_900><loc_600>", "ok", 2, 0, 0),
    ("florence2", f"effusion{FL}<loc_700><loc_8", "ok", [B], 0, 0),  # truncated second box
    ("florence2", "effusion<loc_100><loc_2", "parse_error", 0, 0, 0),
    ("florence2", "effusion<loc_500><loc_600><loc_100><loc_200>", "ok", [B], 1, 0),  # swapped
    ("florence2", "<loc_100><loc_200><loc_1200><loc_600>", "ok", [[0.1005, 0.2005, 1.0, 0.6005]], 1, 0),
    ("florence2", "effusion", "parse_error", 0, 0, 0),  # <loc_> special tokens skipped: lost
    ("florence2", "No effusion is seen.", "empty", 0, 0, 0),
    # deepseekvl2: <|ref|>..<|/ref|><|det|>[[..]]<|/det|>, 0..999
    ("deepseekvl2", f"{DS}[[100, 200, 500, 600]]<|/det|><｜end▁of▁sentence｜>", "ok", [B], 0, 0),
    ("deepseekvl2", f"{DS}[[100, 200, 500, 600], [600, 200, 900, 600]]<|/det|>", "ok", 2, 0, 0),
    ("deepseekvl2", f"{DS}[[100, 200, 500, 600]]<|/det|>{DS}[[600, 200, 900, 600]]<|/det|>", "ok", 2, 0, 0),
    ("deepseekvl2", "effusion[[100, 200, 500, 600]]", "ok", [B], 0, 0),  # special tokens skipped
    ("deepseekvl2", f"{DS}[[100, 200, 500, 600], [600, 2", "ok", [B], 0, 0),  # truncated
    ("deepseekvl2", f"{DS}[[100, 2", "parse_error", 0, 0, 0),
    ("deepseekvl2", f"{DS}[[500, 600, 100, 200]]<|/det|>", "ok", [B], 1, 0),  # swapped
    ("deepseekvl2", f"{DS}[[100, 200, 1200, 600]]<|/det|>", "ok", [[0.1, 0.2, 1.0, 0.6]], 1, 0),
    ("deepseekvl2", f"{DS}[]<|/det|>", "empty", 0, 0, 0),
    ("deepseekvl2", "There is no pleural effusion.", "empty", 0, 0, 0),
    # glm45v: <|begin_of_box|>[..]<|end_of_box|>, 0..1000, after the thinking
    ("glm45v", f"<think>The left base is dense [not a box].</think><answer>It is at {GB}[100, 200, 500, 600]{GE}.</answer>", "ok", [B], 0, 0),
    ("glm45v", f"{GB}[[100, 200, 500, 600], [600, 200, 900, 600]]{GE}", "ok", 2, 0, 0),
    ("glm45v", f"{GB}(100, 200, 500, 600){GE}", "ok", [B], 0, 0),  # bracket style may vary
    ("glm45v", f"{GB}<100,200,500,600>{GE}", "ok", [B], 0, 0),
    ("glm45v", "The effusion is at [100, 200, 500, 600].", "ok", [B], 0, 0),  # tokens skipped
    ("glm45v", f"{GB}[[100, 200, 500, 600], [60", "ok", [B], 0, 0),  # truncated
    ("glm45v", f"{GB}[100, 20", "parse_error", 0, 0, 0),
    ("glm45v", f"{GB}[500, 600, 100, 200]{GE}", "ok", [B], 1, 0),  # swapped
    ("glm45v", f"{GB}[100, 200, 1005, 600]{GE}", "ok", [[0.1, 0.2, 1.0, 0.6]], 1, 0),
    ("glm45v", f"{GB}[]{GE}", "empty", 0, 0, 0),
    ("glm45v", "<think>Looking at both lungs.</think>No pneumothorax is visible.", "empty", 0, 0, 0),
    # minicpmv: <ref>..</ref><box>x1 y1 x2 y2</box>, 0..1000
    ("minicpmv", "The finding is <ref>effusion</ref><box>100 200 500 600</box> at the left base.", "ok", [B], 0, 0),
    ("minicpmv", "<ref>a</ref><box>100 200 500 600</box><box>600 200 900 600</box>", "ok", 2, 0, 0),
    ("minicpmv", "<ref>a</ref><box>100 200 500 600</box><box>700 1", "ok", [B], 0, 0),  # truncated
    ("minicpmv", "<ref>a</ref><box>100 200 5", "parse_error", 0, 0, 0),
    ("minicpmv", "<box>500 600 100 200</box>", "ok", [B], 1, 0),  # swapped
    ("minicpmv", "<box>100 200 1003 600</box>", "ok", [[0.1, 0.2, 1.0, 0.6]], 1, 0),
    ("minicpmv", "<box>100 200 500</box>", "parse_error", 0, 0, 1),  # wrong arity
    ("minicpmv", "effusion100 200 500 600", "ok", [B], 0, 0),  # tags skipped, if special
    ("minicpmv", "No consolidation is identified.", "empty", 0, 0, 0),
    # kosmos2: <phrase>..</phrase><object><patch_index_..><patch_index_..></object>, 32 x 32
    ("kosmos2", SNOWMAN, "ok", SNOWMAN_BOXES, 0, 0),
    ("kosmos2", f"<phrase>effusion</phrase><object>{KO}</object>", "ok", [K], 0, 0),
    ("kosmos2", f"<object>{KO}{KD}<patch_index_0005><patch_index_0911></object>", "ok", 2, 0, 0),
    ("kosmos2", f"<object>{KO}{KD}<patch_index_0005>", "ok", [K], 0, 0),  # truncated 2nd box
    ("kosmos2", "<phrase>a</phrase><object><patch_index_0195><patch_ind", "parse_error", 0, 0, 0),
    ("kosmos2", "<object><patch_index_0623><patch_index_0195></object>", "ok", [K], 1, 0),  # swapped
    ("kosmos2", "<object><patch_index_0195><patch_index_1100></object>", "ok", [[3.5 / 32, 6.5 / 32, 12.5 / 32, 1.0]], 1, 0),
    ("kosmos2", "<object><patch_index_0195></object>", "parse_error", 0, 0, 1),  # one index
    ("kosmos2", f"effusion {KO}", "ok", [K], 0, 0),  # no <object> tag
    ("kosmos2", "<grounding> An image of a chest with no effusion.", "empty", 0, 0, 0),
    # cure: phrase: [cx,cy,w,h] [cx,cy,w,h], two decimals
    ("cure", "effusion: [0.30,0.40,0.40,0.40]", "ok", [B], 0, 0),
    ("cure", "effusion: [0.30,0.40,0.40,0.40] [0.75,0.40,0.30,0.40]", "ok", [B, [0.6, 0.2, 0.9, 0.6]], 0, 0),
    ("cure", "effusion: [[0.30, 0.40, 0.40, 0.40], [0.75, 0.40, 0.30, 0.40]]", "ok", 2, 0, 0),
    ("cure", "Mild left basilar atelectasis [0.30,0.40,0.40,0.40]. No pleural effusion.", "ok", [B], 0, 0),
    ("cure", "Location of left lung: [0.30, 0.40, 0.40, 0.40].", "ok", [B], 0, 0),
    ("cure", "effusion: [0.30,0.40,0.40,0.40] [0.6,0.5", "ok", [B], 0, 0),  # truncated
    ("cure", "effusion: [0.30,0.4", "parse_error", 0, 0, 0),
    ("cure", "effusion: [0.30,0.40,-0.40,0.40]", "ok", [B], 1, 0),  # negative width: swapped
    ("cure", "effusion: [0.95,0.40,0.20,0.40]", "ok", [[0.85, 0.2, 1.0, 0.6]], 1, 0),
    ("cure", "effusion: [0.30,0.40,0.40]", "parse_error", 0, 0, 0),  # a lone 3-list: no box
    ("cure", "effusion: [[0.30,0.40,0.40]]", "parse_error", 0, 0, 1),  # in a list: a bad box
    ("cure", "No pleural effusion.", "empty", 0, 0, 0),
    ("cure", "", "parse_error", 0, 0, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "raw", "status", "expected", "n_repaired", "n_dropped"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_quirk(
    name: str,
    raw: str,
    status: str,
    expected: list[list[float]] | int,
    n_repaired: int,
    n_dropped: int,
) -> None:
    res = get_codec(name).parse(raw, image_size=SIZE)
    assert res.raw == raw
    assert (res.status, res.n_repaired, res.n_dropped) == (status, n_repaired, n_dropped), res
    if isinstance(expected, int):
        assert len(res.boxes) == expected
    else:
        assert [b.to_list() for b in res.boxes] == [pytest.approx(e, abs=1.5e-3) for e in expected]
    assert (res.error is None) == (status != "parse_error")
