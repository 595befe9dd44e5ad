"""Tests of ricl.evaluation.metrics and ricl.evaluation.rodeo, on cases whose answer is
known by construction (box coordinates are binary fractions where exactness matters)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ricl.boxes.geometry import union_area, union_iou
from ricl.evaluation.metrics import (
    InstanceScore,
    align_predictions,
    prf1,
    score,
    score_instance,
    scored_boxes,
)
from ricl.evaluation.rodeo import (
    DUMMY_CLASS,
    _install_mcc_shim,
    boxes_to_rodeo_array,
    compute_rodeo,
    load_rodeo,
)
from ricl.types import Box, Instance, Prediction

from .strategies import boxes


def B(*v: float) -> Box:
    return Box(*v)


def inst(
    iid: str,
    boxes: tuple[Box, ...] = (),
    *,
    image_id: str | None = None,
    phrase: str | None = None,
    group: str | None = "g",
) -> Instance:
    return Instance(
        instance_id=iid,
        dataset="test",
        study_id=iid.split("/")[0],
        image_id=image_id if image_id is not None else f"img-{iid}",
        patient_id="p",
        split="test",
        image_path=f"{iid}.png",
        phrase=phrase if phrase is not None else f"phrase {iid}",
        boxes=boxes,
        label_group=group,
    )


def pred(i: Instance, boxes: tuple[Box, ...] = (), status: str | None = None, **kw) -> Prediction:
    if status is None:
        status = "ok" if boxes else "empty"
    return Prediction(image_id=i.image_id, phrase=i.phrase, boxes=boxes, status=status, **kw)


# ------------------------------------------------------------------------ union IoU per instance
def test_union_iou_known_cases():
    # disjoint
    assert union_iou([B(0, 0, 0.5, 0.5)], [B(0.5, 0.5, 1, 1)]) == 0.0
    # nested: gold area .25, pred area .125 inside it
    assert union_iou([B(0, 0, 0.25, 0.5)], [B(0, 0, 0.5, 0.5)]) == 0.5
    # two overlapping gold boxes count once: union .16 + .16 - .04 = .28, pred covers .36
    gold = [B(0, 0, 0.4, 0.4), B(0.2, 0.2, 0.6, 0.6)]
    assert union_area(gold) == pytest.approx(0.28, abs=1e-12)
    assert union_iou([B(0, 0, 0.6, 0.6)], gold) == pytest.approx(0.28 / 0.36, abs=1e-12)
    # empty conventions
    assert union_iou([], []) == 1.0
    assert union_iou([], [B(0, 0, 1, 1)]) == 0.0
    assert union_iou([B(0, 0, 1, 1)], []) == 0.0


def test_score_instance_fields_and_failed_rows_are_empty():
    i = inst("s/0", (B(0, 0, 0.5, 0.5),))
    s = score_instance(i, pred(i, (B(0, 0, 0.25, 0.5),)))
    assert isinstance(s, InstanceScore)
    assert (s.union_iou, s.n_pred, s.n_gold, s.status, s.missing) == (0.5, 1, 1, "ok", False)
    assert s.n_matches(0.5) == 1 and s.n_matches(0.3) == 1
    assert json.loads(json.dumps(s.to_dict()))["matches@0.5"] == 1

    perfect_but_failed = Prediction(
        i.image_id, i.phrase, (B(0, 0, 0.5, 0.5),), status="parse_error"
    )
    s = score_instance(i, perfect_but_failed)
    assert (s.union_iou, s.n_pred, s.status) == (0.0, 0, "parse_error")
    assert scored_boxes(perfect_but_failed) == ()
    assert scored_boxes(None) == ()

    s = score_instance(i, None)
    assert s.missing and s.union_iou == 0.0 and s.n_pred == 0
    with pytest.raises(KeyError):
        s.n_matches(0.7)


# ------------------------------------------------------------------------ aggregate metrics
def test_acc_thresholds_at_boundaries():
    insts = [
        inst("a/0", (B(0, 0, 0.5, 0.5),)),  # pred nested -> IoU exactly 0.5
        inst("b/0", (B(0, 0, 1, 1),)),  # pred covers 0.3 of it -> IoU 0.3 (up to rounding)
        inst("c/0", (B(0, 0, 1, 1),)),  # IoU 0.1
        inst("d/0", (B(0, 0, 1, 1),)),  # IoU 0.09: below every threshold
    ]
    preds = [
        pred(insts[0], (B(0, 0, 0.25, 0.5),)),
        pred(insts[1], (B(0, 0, 0.3, 1),)),
        pred(insts[2], (B(0, 0, 0.1, 1),)),
        pred(insts[3], (B(0, 0, 0.09, 1),)),
    ]
    r = score(insts, preds, rodeo=False)
    assert r["acc@0.5"] == 0.25
    assert r["acc@0.3"] == 0.5
    assert r["acc@0.1"] == 0.75
    assert r["union_iou_micro"] == pytest.approx((0.5 + 0.3 + 0.1 + 0.09) / 4)


def test_threshold_tolerance_absorbs_float_rounding():
    # 0.2 * 1 / 1 computes as 0.19999999999999996: built to be exactly at the threshold
    i = inst("s/0", (B(0, 0, 1, 1),))
    p = pred(i, (B(0, 0, 0.2, 1),))
    assert score_instance(i, p).union_iou < 0.2
    r = score([i], [p], thresholds_acc=(0.2,), thresholds_f1=(0.2,), rodeo=False)
    assert r["acc@0.2"] == 1.0 and r["f1@0.2"] == 1.0
    q = pred(i, (B(0, 0, 0.199, 1),))
    r = score([i], [q], thresholds_acc=(0.2,), thresholds_f1=(0.2,), rodeo=False)
    assert r["acc@0.2"] == 0.0 and r["f1@0.2"] == 0.0


def _prf_set():
    i1 = inst("s1/0", (B(0, 0, 0.5, 0.5),))
    i2 = inst("s2/0", (B(0.5, 0.5, 1, 1), B(0, 0.5, 0.5, 1)))
    preds = [
        # two preds overlapping the one gold box: one-to-one -> only one match
        pred(i1, (B(0, 0, 0.5, 0.5), B(0, 0, 0.5, 0.25))),  # IoUs 1.0 and 0.5 with the gold
        # IoU 0.5 with gold 0; IoU 0.4 with gold 1
        pred(i2, (B(0.5, 0.5, 1, 0.75), B(0, 0.5, 0.2, 1))),
    ]
    return [i1, i2], preds


def test_precision_recall_f1_pooled_counts():
    insts, preds = _prf_set()
    r = score(insts, preds, rodeo=False)
    # 4 predicted boxes, 3 gold boxes; at 0.5: 2 matches; at 0.3: 3 matches
    assert r["precision@0.5"] == 0.5
    assert r["recall@0.5"] == pytest.approx(2 / 3)
    assert r["f1@0.5"] == pytest.approx(4 / 7)
    assert r["precision@0.3"] == 0.75
    assert r["recall@0.3"] == 1.0
    assert r["f1@0.3"] == pytest.approx(6 / 7)


def test_greedy_one_to_one():
    i = inst("s/0", (B(0, 0, 0.5, 0.5),))
    both = pred(i, (B(0, 0, 0.5, 0.5), B(0, 0, 0.5, 0.5)))
    s = score_instance(i, both)
    assert s.n_matches(0.5) == 1
    r = score([i], [both], rodeo=False)
    assert (r["precision@0.5"], r["recall@0.5"]) == (0.5, 1.0)


def test_prf_zero_division_conventions():
    assert prf1(0, 0, 0) == (1.0, 1.0, 1.0)  # nothing to find, nothing claimed
    assert prf1(0, 0, 3) == (0.0, 0.0, 0.0)  # no predicted boxes -> precision 0.0
    assert prf1(0, 2, 0) == (0.0, 0.0, 0.0)  # no gold boxes -> recall 0.0
    assert prf1(0, 2, 3) == (0.0, 0.0, 0.0)  # P + R = 0 -> F1 0.0

    neg = [inst("n1/0"), inst("n2/0")]  # negative findings, correctly answered empty
    r = score(neg, [pred(neg[0]), pred(neg[1])])
    assert r["union_iou_micro"] == 1.0 and r["acc@0.5"] == 1.0
    assert (r["precision@0.5"], r["recall@0.5"], r["f1@0.5"]) == (1.0, 1.0, 1.0)
    # RoDeO scores boxes only: with none to match it returns its worst value, 0.0
    assert r["rodeo_total"] == 0.0

    r = score(neg, [pred(neg[0], (B(0, 0, 0.5, 0.5),))], rodeo=False)
    assert (r["precision@0.5"], r["recall@0.5"], r["f1@0.5"]) == (0.0, 0.0, 0.0)
    assert r["union_iou_micro"] == 0.5  # one wrong box (0), one missing-but-correctly-empty (1)


def test_macro_vs_micro_with_unequal_groups():
    full = B(0, 0, 0.5, 0.5)
    a = [inst(f"a{k}/0", (full,), group="A") for k in range(3)]
    b = [inst("b/0", (full,), group="B")]
    preds = [
        pred(a[0], (full,)),  # 1
        pred(a[1], (full,)),  # 1
        pred(a[2], (B(0.5, 0.5, 1, 1),)),  # 0
        pred(b[0], (B(0, 0, 0.25, 0.5),)),  # 0.5
    ]
    r = score(a + b, preds, rodeo=False)
    assert r["union_iou_micro"] == pytest.approx(2.5 / 4)
    assert r["union_iou_macro"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert list(r["per_label_group"]) == ["A", "B"]
    ga, gb = r["per_label_group"]["A"], r["per_label_group"]["B"]
    assert ga["n_instances"] == 3 and gb["n_instances"] == 1
    assert ga["union_iou_micro"] == pytest.approx(2 / 3) == ga["union_iou_macro"]
    assert gb["union_iou_micro"] == 0.5


def test_label_group_none_is_unknown():
    i = inst("s/0", (B(0, 0, 0.5, 0.5),), group=None)
    r = score([i], [pred(i, i.boxes)])
    assert list(r["per_label_group"]) == ["unknown"]
    assert r["per_label_group"]["unknown"]["rodeo_total"] == pytest.approx(1.0, abs=1e-5)


def test_missing_parse_failures_errors_unmatched():
    box = B(0, 0, 0.5, 0.5)
    insts = [inst(f"s{k}/0", (box,)) for k in range(4)]
    preds = [
        pred(insts[0], (box,)),
        Prediction(
            insts[1].image_id, insts[1].phrase, (box,), status="parse_error", raw="(garbage"
        ),
        Prediction(insts[2].image_id, insts[2].phrase, status="error"),
        # insts[3]: no row
        Prediction("other-image", insts[0].phrase, (box,)),  # matches no instance
        pred(insts[0], (box,)),  # second row for a single instance: left over
    ]
    r = score(insts, preds, rodeo=False)
    assert r["n_instances"] == 4
    assert r["n_missing_predictions"] == 1
    assert r["n_parse_failures"] == 1
    assert r["n_errors"] == 1
    assert r["n_unmatched_predictions"] == 2
    # the parse_error row's perfect box does not count: only instance 0 scores
    assert r["union_iou_micro"] == 0.25
    assert (r["precision@0.5"], r["recall@0.5"]) == (1.0, 0.25)
    g = r["per_label_group"]["g"]
    assert (g["n_missing_predictions"], g["n_parse_failures"], g["n_errors"]) == (1, 1, 1)
    assert "n_unmatched_predictions" not in g


def test_duplicate_keys_matched_in_order():
    # the same sentence twice in one study, with different gold boxes
    i1 = inst("s/0", (B(0, 0, 0.5, 0.5),), image_id="img", phrase="same")
    i2 = inst("s/1", (B(0.5, 0.5, 1, 1),), image_id="img", phrase="same")
    p1 = Prediction("img", "same", (B(0, 0, 0.5, 0.5),))
    p2 = Prediction("img", "same", (B(0.5, 0.5, 1, 1),))
    aligned, n_unmatched = align_predictions([i1, i2], [p1, p2])
    assert aligned == [p1, p2] and n_unmatched == 0
    assert score([i1, i2], [p1, p2], rodeo=False)["union_iou_micro"] == 1.0
    assert score([i1, i2], [p2, p1], rodeo=False)["union_iou_micro"] == 0.0
    # one row for two instances: the first instance gets it, the second is missing
    r = score([i1, i2], [p1], rodeo=False)
    assert (r["n_missing_predictions"], r["union_iou_micro"]) == (1, 0.5)
    # three rows for two instances: the third is left over
    assert align_predictions([i1, i2], [p1, p2, p2])[1] == 1


def test_mapping_predictions():
    i1 = inst("s/0", (B(0, 0, 0.5, 0.5),))
    i2 = inst("t/0", (B(0, 0, 0.5, 0.5),))
    p = pred(i1, i1.boxes)
    by_key = {(p.image_id, p.phrase): p}
    by_id = {"t/0": Prediction(i2.image_id, i2.phrase, i2.boxes), "nope/0": p}
    assert align_predictions([i1, i2], by_key) == ([p, None], 0)
    assert align_predictions([i1, i2], by_id)[0][0] is None
    assert align_predictions([i1, i2], by_id)[1] == 1
    assert score([i1, i2], by_id, rodeo=False)["union_iou_micro"] == 0.5
    with pytest.raises(TypeError):
        align_predictions([i1], {1: p})


def test_output_is_json_and_ordered():
    insts, preds = _prf_set()
    r = score(insts, preds)
    assert json.loads(json.dumps(r)) == r
    assert list(r) == [
        "n_instances", "n_missing_predictions", "n_parse_failures", "n_errors",
        "union_iou_micro", "union_iou_macro", "acc@0.1", "acc@0.3", "acc@0.5",
        "precision@0.3", "recall@0.3", "f1@0.3", "precision@0.5", "recall@0.5", "f1@0.5",
        "rodeo_total", "rodeo_localization", "rodeo_shape", "rodeo_classification",
        "n_unmatched_predictions", "per_label_group",
    ]  # fmt: skip
    for k, v in r.items():
        if k.startswith("n_"):
            assert type(v) is int, k
        elif k != "per_label_group":
            assert type(v) is float, k
    assert list(score(insts, preds, rodeo=False))[-3:] == [
        "f1@0.5", "n_unmatched_predictions", "per_label_group",
    ]  # fmt: skip
    assert score(insts, preds) == r  # deterministic


def test_score_rejects_bad_input():
    i = inst("s/0")
    with pytest.raises(ValueError, match="no instances"):
        score([], [])
    with pytest.raises(ValueError, match="thresholds_acc"):
        score([i], [], thresholds_acc=(0.0,))
    with pytest.raises(ValueError, match="thresholds_f1"):
        score([i], [], thresholds_f1=(1.5,))
    r = score([i], [], thresholds_acc=(0.25,), thresholds_f1=(0.75,), rodeo=False)
    assert "acc@0.25" in r and "f1@0.75" in r and "acc@0.5" not in r


# ------------------------------------------------------------------------ RoDeO
def test_mcc_shim_returns_numpy_float_and_is_idempotent():
    load_rodeo()
    import rodeo.rodeo as rr

    shimmed = rr.matthews_corrcoef
    assert type(shimmed([0, 1, 1, 0], [0, 1, 0, 0])) is np.float64
    load_rodeo()
    _install_mcc_shim(rr)
    assert rr.matthews_corrcoef is shimmed  # applied once

    # harmless when the wrapped function already returns a numpy float
    fixed = types.SimpleNamespace(matthews_corrcoef=lambda a, b: np.float32(0.25))
    _install_mcc_shim(fixed)
    out = fixed.matthews_corrcoef([0], [0])
    assert type(out) is np.float32 and out == np.float32(0.25)
    old = types.SimpleNamespace(matthews_corrcoef=lambda a, b: 0.25)
    _install_mcc_shim(old)
    assert type(old.matthews_corrcoef([0], [0])) is np.float64


def test_reference_compute_runs_after_shim():
    RoDeO = load_rodeo()
    m = RoDeO(["a", "b"])
    box = boxes_to_rodeo_array([B(0.1, 0.1, 0.3, 0.3)], 0)
    m.add([box], [box])
    assert m.compute()["RoDeO/total"] == pytest.approx(1.0, abs=1e-5)


def test_rodeo_array_format():
    a = boxes_to_rodeo_array([B(0.25, 0.5, 0.75, 1.0)], 3)
    assert a.shape == (1, 5) and a.tolist() == [[0.25, 0.5, 0.5, 0.5, 3.0]]
    assert boxes_to_rodeo_array([], 0).shape == (0, 5)


def test_rodeo_perfect_single_class_with_dummy():
    golds = [[B(0.1, 0.1, 0.3, 0.4)], [B(0.5, 0.5, 0.9, 0.7), B(0.1, 0.6, 0.2, 0.9)], []]
    r = compute_rodeo(golds, golds, ["x", "x", "x"])
    # the reference's harmonic mean adds eps=1e-6: a perfect total is 1.000001
    assert r["rodeo_total"] == pytest.approx(1.0, abs=1e-5)
    assert r["rodeo_localization"] == pytest.approx(1.0)
    assert r["rodeo_shape"] == pytest.approx(1.0)
    assert r["rodeo_classification"] == pytest.approx(1.0)
    assert list(r) == ["rodeo_total", "rodeo_localization", "rodeo_shape", "rodeo_classification"]


def test_rodeo_dummy_and_class_list_do_not_change_scores():
    golds = [[B(0.1, 0.1, 0.3, 0.4)], [B(0.5, 0.5, 0.9, 0.7)], [B(0.2, 0.2, 0.4, 0.4)]]
    preds = [[B(0.15, 0.1, 0.35, 0.4), B(0.6, 0.6, 0.7, 0.7)], [], [B(0.2, 0.25, 0.5, 0.4)]]
    one = compute_rodeo(preds, golds, ["x"] * 3)  # ["x", DUMMY_CLASS]
    more = compute_rodeo(preds, golds, ["x"] * 3, class_names=["w", "x", "y", "z"])
    assert one == pytest.approx(more, abs=1e-12)
    # classification: matched pairs always agree on the class, so it is the matched share:
    # 2 matched, 1 over-predicted, 1 missed box
    assert one["rodeo_classification"] == pytest.approx(2 / 4)
    assert DUMMY_CLASS not in ("x",)
    with pytest.raises(ValueError, match="not in class_names"):
        compute_rodeo(preds, golds, ["x"] * 3, class_names=["y", "z"])
    with pytest.raises(ValueError, match="one of each"):
        compute_rodeo(preds, golds, ["x"])


def test_rodeo_shift_lowers_localization_only():
    gold = [[B(0.2, 0.2, 0.4, 0.4)]]
    shifted = [[B(0.3, 0.2, 0.5, 0.4)]]  # moved by half its width
    r = compute_rodeo(shifted, gold, ["x"])
    # exp(-0.5**2 * ln 2) = 2**-0.25
    assert r["rodeo_localization"] == pytest.approx(2**-0.25)
    assert r["rodeo_shape"] == pytest.approx(1.0)
    assert r["rodeo_total"] < compute_rodeo(gold, gold, ["x"])["rodeo_total"]


def test_rodeo_is_scale_invariant_normalized_vs_pixels():
    RoDeO = load_rodeo()
    golds = [[B(0.1, 0.1, 0.3, 0.4)], [B(0.5, 0.5, 0.9, 0.7)]]
    preds = [[B(0.15, 0.12, 0.3, 0.5), B(0.6, 0.6, 0.7, 0.7)], [B(0.45, 0.5, 0.8, 0.9)]]

    def run(sx: float, sy: float) -> dict:
        scale = np.array([sx, sy, sx, sy, 1.0])
        m = RoDeO(["x", "y"])
        m.add(
            [boxes_to_rodeo_array(p, 0) * scale for p in preds],
            [boxes_to_rodeo_array(g, 0) * scale for g in golds],
        )
        return m.compute()

    assert run(1, 1) == pytest.approx(run(2048, 1500), rel=1e-9)
    norm = compute_rodeo(preds, golds, ["x", "x"])
    assert norm["rodeo_total"] == pytest.approx(run(2048, 1500)["RoDeO/total"], rel=1e-9)


def test_rodeo_no_matches_returns_zeros_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_rodeo([[], []], [[B(0, 0, 1, 1)], []], ["x", "x"]) == dict.fromkeys(
            ["rodeo_total", "rodeo_localization", "rodeo_shape", "rodeo_classification"], 0.0
        )
        assert compute_rodeo([], [], [])["rodeo_total"] == 0.0
        assert compute_rodeo([[B(0, 0, 1, 1)]], [[]], ["x"])["rodeo_total"] == 0.0


def test_score_rodeo_uses_groups_and_full_class_list():
    box, other = B(0.2, 0.2, 0.4, 0.4), B(0.3, 0.2, 0.5, 0.4)
    a = [inst("a/0", (box,), group="A"), inst("a/1", (box,), group="A")]
    b = [inst("b/0", (box,), group="B")]
    preds = [pred(a[0], (box,)), pred(a[1], (other,)), pred(b[0], (box, other))]
    r = score(a + b, preds)
    expected_all = compute_rodeo([(box,), (other,), (box, other)], [(box,)] * 3, ["A", "A", "B"])
    assert {k: r[k] for k in expected_all} == pytest.approx(expected_all)
    ga = r["per_label_group"]["A"]
    exp_a = compute_rodeo([(box,), (other,)], [(box,)] * 2, ["A", "A"], class_names=["A", "B"])
    assert {k: ga[k] for k in exp_a} == pytest.approx(exp_a)
    gb = r["per_label_group"]["B"]
    assert gb["rodeo_classification"] == pytest.approx(0.5)  # 1 matched, 1 over-predicted


def test_scoring_with_rodeo_shows_no_warnings():
    insts, preds = _prf_set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score(insts, preds)
        score([inst("n/0")], [])


def test_imports_stay_light():
    code = (
        "import sys, ricl, ricl.evaluation.metrics, ricl.evaluation.rodeo, "
        "ricl.evaluation.predictions\n"
        "heavy = [m for m in ('sklearn', 'rodeo', 'scipy', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------ properties
box_sets = st.lists(boxes(), max_size=5)


@settings(max_examples=150, deadline=None)
@given(box_sets, box_sets)
def test_union_iou_properties(a, b):
    v = union_iou(a, b)
    assert 0.0 <= v <= 1.0
    assert v == pytest.approx(union_iou(b, a), abs=1e-9)
    if a:
        assert union_iou(a, a) == pytest.approx(1.0, abs=1e-9)
        assert union_iou([*a, a[0]], b) == pytest.approx(v, abs=1e-9)
    if b:
        assert union_iou(a, [b[-1], *b]) == pytest.approx(v, abs=1e-9)


@st.composite
def grid_boxes(draw) -> tuple[int, int, int, int]:
    x0, x1 = sorted(draw(st.lists(st.integers(0, 16), min_size=2, max_size=2, unique=True)))
    y0, y1 = sorted(draw(st.lists(st.integers(0, 16), min_size=2, max_size=2, unique=True)))
    return x0, y0, x1, y1


@settings(max_examples=100, deadline=None)
@given(st.lists(grid_boxes(), min_size=1, max_size=6))
def test_union_area_matches_cell_count_on_a_grid(cells):
    # boxes on a 1/16 grid: the exact union area is the number of covered cells / 256
    covered = {(x, y) for x0, y0, x1, y1 in cells for x in range(x0, x1) for y in range(y0, y1)}
    got = union_area([Box(x0 / 16, y0 / 16, x1 / 16, y1 / 16) for x0, y0, x1, y1 in cells])
    assert got == pytest.approx(len(covered) / 256, abs=1e-12)
