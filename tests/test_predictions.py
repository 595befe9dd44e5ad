"""Tests of ricl.evaluation.predictions (JSON-lines predictions files)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ricl.errors import DatasetFormatError
from ricl.evaluation.predictions import (
    STATUSES,
    prediction_from_dict,
    prediction_to_dict,
    read_predictions,
    write_predictions,
)
from ricl.types import Box, Prediction

GOOD = {"image_id": "img1.png", "phrase": "Cardiomegaly.", "boxes": [[0.1, 0.2, 0.5, 0.6]]}


def test_statuses_match_the_type():
    assert STATUSES == ("ok", "empty", "parse_error", "error")


def test_write_read_round_trip(tmp_path):
    preds = [
        Prediction("img1.png", "Cardiomegaly.", (Box(0.1, 0.2, 0.5, 0.6),)),
        Prediction("img1.png", "Derrame pleural ñ — unicode.", status="empty"),
        Prediction(
            "img2.png",
            "Two boxes.",
            (Box(0.0, 0.0, 1.0, 1.0), Box(1 / 3, 0.25, 0.5, 2 / 3)),
            scores=(0.9, 0.1),
            raw="<box>(1,2),(3,4)</box>",
        ),
        Prediction("img3.png", "Bad answer.", status="parse_error", raw="I think it's left"),
        Prediction("img4.png", "Timeout.", status="error"),
        Prediction("img5.png", "ok but nothing", status="ok"),
    ]
    path = tmp_path / "sub" / "preds.jsonl"
    write_predictions(path, preds[:2])
    write_predictions(path, preds[2:], append=True)
    assert read_predictions(path) == preds
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(preds) and all(json.loads(line) for line in lines)
    assert "ñ" in lines[1]  # UTF-8, not \u escapes
    write_predictions(path, preds[:1])  # append=False replaces
    assert read_predictions(path) == preds[:1]


def test_to_dict_shape():
    d = prediction_to_dict(Prediction("i", "p", (Box(0, 0, 0.5, 0.5),)))
    assert d == {"image_id": "i", "phrase": "p", "boxes": [[0.0, 0.0, 0.5, 0.5]], "status": "ok"}


_c = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def predictions(draw) -> Prediction:
    bs = []
    for _ in range(draw(st.integers(0, 3))):
        x0, x1 = sorted(draw(st.lists(_c, min_size=2, max_size=2, unique=True)))
        y0, y1 = sorted(draw(st.lists(_c, min_size=2, max_size=2, unique=True)))
        bs.append(Box(x0, y0, x1, y1))
    scores = (
        tuple(draw(st.lists(st.floats(-1e6, 1e6), min_size=len(bs), max_size=len(bs))))
        if bs and draw(st.booleans())
        else ()
    )
    status = draw(st.sampled_from(["ok", "parse_error", "error"] + ([] if bs else ["empty"])))
    return Prediction(
        image_id=draw(st.text(max_size=10)),
        phrase=draw(st.text(max_size=30)),
        boxes=tuple(bs),
        scores=scores,
        status=status,
        raw=draw(st.none() | st.text(max_size=20)),
    )


@settings(max_examples=100, deadline=None)
@given(predictions())
def test_dict_round_trip_property(p):
    assert prediction_from_dict(prediction_to_dict(p)) == p
    assert prediction_from_dict(json.loads(json.dumps(prediction_to_dict(p)))) == p


def test_defaults_extra_keys_and_blank_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [
        {**GOOD, "latency_s": 1.5, "prompt": {"k": 3}},
        {"image_id": "img1.png", "phrase": "Nothing here.", "boxes": []},
    ]
    path.write_text(
        "\n" + json.dumps(rows[0]) + "\n   \n" + json.dumps(rows[1]) + "\n\n", encoding="utf-8"
    )
    got = read_predictions(path)
    assert [p.status for p in got] == ["ok", "empty"]
    assert got[0].boxes == (Box(0.1, 0.2, 0.5, 0.6),) and got[0].scores == () and got[0].raw is None


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"phrase": "x", "boxes": []}), "missing key 'image_id'"),
        (json.dumps({"image_id": "i", "boxes": []}), "missing key 'phrase'"),
        (json.dumps({"image_id": "i", "phrase": "x"}), "missing key 'boxes'"),
        (json.dumps({**GOOD, "image_id": 7}), "'image_id' must be a string"),
        (json.dumps({**GOOD, "boxes": [[0.1, 0.2, 1.5, 0.6]]}), "outside [0, 1]"),
        (json.dumps({**GOOD, "boxes": [[0.5, 0.2, 0.1, 0.6]]}), "inverted"),
        (json.dumps({**GOOD, "boxes": [[0.1, 0.2, 0.5]]}), "4 numbers"),
        (json.dumps({**GOOD, "boxes": [[0.1, 0.2, 0.5, "0.6"]]}), "4 numbers"),
        (json.dumps({**GOOD, "boxes": "[[0.1, 0.2, 0.5, 0.6]]"}), "'boxes' must be a list"),
        ('{"image_id": "i", "phrase": "x", "boxes": [[0.1, NaN, 0.5, 0.6]]}', "not finite"),
        (json.dumps({**GOOD, "scores": [0.5, 0.4]}), "2 values for 1 boxes"),
        (json.dumps({**GOOD, "scores": ["high"]}), "finite numbers"),
        (json.dumps({**GOOD, "status": "done"}), "unknown status 'done'"),
        (json.dumps({**GOOD, "status": "empty"}), "status 'empty' with 1 boxes"),
        (json.dumps({**GOOD, "raw": 5}), "'raw' must be a string"),
    ],
)
def test_malformed_line_names_file_line_and_fix(tmp_path, line, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError) as e:
        read_predictions(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: "), msg
    assert needle in msg, msg
    assert any(w in msg for w in ("use", "must", "write", "give", "every", "clip")), msg


def test_from_dict_errors_without_location():
    with pytest.raises(DatasetFormatError, match="missing key 'boxes'"):
        prediction_from_dict({"image_id": "i", "phrase": "x"})
    with pytest.raises(DatasetFormatError, match="JSON object"):
        prediction_from_dict(["i"])  # type: ignore[arg-type]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_predictions(tmp_path / "nope.jsonl")
