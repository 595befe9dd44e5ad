"""``ricl probe`` against fake OpenAI-compatible servers that answer in one box frame each,
enforce an images-per-prompt limit (vLLM's 400 message) or stop at max_tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack

import pytest

from ricl.boxes.codecs import CODECS, get_codec
from ricl.boxes.transforms import letterbox
from ricl.vlm.openai import OpenAIBackend
from ricl.vlm.probe import FRAMES, frame_boxes, number_quads, probe_cases, probe_server
from tests.fake_openai import fake_server, parts

SCALE = 0.5  # 224-px probe images: fast to encode, sides not multiples of 28
CASES = probe_cases(SCALE)


def _gold_on_sent(case, sent: tuple[int, int]):
    """The case's gold boxes on the image the server received (a letterbox when the codec
    squared an off-square original)."""
    w, h = case.size
    if sent[0] == sent[1] and w != h:
        t = letterbox(w, h, sent[0])
        return [t.box_to_square(b) for b in case.boxes]
    return list(case.boxes)


def _answer(frame: str, phrase: str, boxes, sent: tuple[int, int]) -> str:
    """What a model speaking ``frame`` writes for ``boxes`` (normalized on the sent image)."""
    if frame == "rel1000":
        return f"<|object_ref_start|>{phrase}<|object_ref_end|>" + "".join(
            f"<|box_start|>({round(b.x_min * 1000)},{round(b.y_min * 1000)}),"
            f"({round(b.x_max * 1000)},{round(b.y_max * 1000)})<|box_end|>"
            for b in boxes
        )
    if frame == "rel1000_yx":
        items = [{"box_2d": [round(b.y_min * 1000), round(b.x_min * 1000), round(b.y_max * 1000),
                             round(b.x_max * 1000)], "label": phrase} for b in boxes]  # fmt: skip
        return "```json\n" + json.dumps(items) + "\n```"
    if frame in ("resized_px", "sent_px"):
        rw, rh = get_codec("qwen25vl").resized_size(sent) if frame == "resized_px" else sent
        items = [{"bbox_2d": [round(b.x_min * rw), round(b.y_min * rh), round(b.x_max * rw),
                              round(b.y_max * rh)], "label": phrase} for b in boxes]  # fmt: skip
        return json.dumps(items)
    if frame == "normalized":
        return json.dumps([[round(v, 4) for v in b.to_list()] for b in boxes])
    raise AssertionError(frame)


def _answerer(frame: str, image_limit: int, truncate_after: int | None):
    def answer(body):
        text, sizes = parts(body)
        if len(sizes) > image_limit:
            return 400, f"At most {image_limit} image(s) may be provided in one request."
        case = next((c for c in CASES if c.phrase in text), None)
        if case is None:
            return str(len(sizes)), "stop"
        sent = sizes[-1]
        if frame.startswith("codec:"):  # a model fine-tuned on one codec's answers
            codec = get_codec(frame.split(":", 1)[1])
            size = case.size if codec.image_transform(case.size) else sent
            content = codec.format(case.boxes, image_size=size, phrase=case.phrase)
        else:
            content = _answer(frame, case.phrase, _gold_on_sent(case, sent), sent)
        if truncate_after is not None and len(content) > truncate_after:
            return content[:truncate_after], "length"
        return content, "stop"

    return answer


@pytest.fixture
def serve():
    with ExitStack() as stack:

        def start(frame: str, image_limit: int = 8, truncate_after: int | None = None):
            return stack.enter_context(fake_server(_answerer(frame, image_limit, truncate_after)))

        yield start


def _probe(url: str, **kw):
    backend = OpenAIBackend("fake", url, max_tokens=64, max_retries=0)
    return probe_server(backend, cases=CASES, **kw)


@pytest.mark.parametrize(
    ("frame", "codec"),
    [
        ("rel1000", "qwen2vl"),
        ("resized_px", "qwen25vl"),
        ("rel1000_yx", "medgemma"),
        ("normalized", "json"),
    ],
)
def test_the_probe_names_the_codec_and_frame_the_server_speaks(serve, frame, codec):
    url, _ = serve(frame)
    report = _probe(url)
    assert report.best_frame == frame
    assert report.recommended_codec == codec
    assert report.codecs[codec]["mean_iou"] > 0.9
    assert report.codecs[codec]["n_ok"] == len(CASES)
    assert report.frames[frame]["mean_iou"] > 0.9
    assert report.recommendation.startswith(f"use codec={codec} ")
    assert report.n_truncated == 0
    assert report.images_per_prompt == {"max_accepted": 8, "refused_at": None,
                                        "tried": [1, 2, 4, 8], "refusal": None}  # fmt: skip


@pytest.mark.parametrize("codec", CODECS.names())
def test_a_server_speaking_a_codec_is_told_that_codec(serve, codec):
    """Every registered codec, spoken exactly: the probe names it (ties between codecs
    reading the same numbers are broken by how the answers are written)."""
    url, _ = serve(f"codec:{codec}")
    report = _probe(url, max_images=1)
    assert report.recommended_codec == codec, {c: (v["mean_iou"], v["syntax_similarity"])
                                               for c, v in report.codecs.items()}  # fmt: skip
    assert report.codecs[codec]["n_ok"] == len(CASES)


def test_pixels_of_the_sent_image_are_told_apart_from_the_resized_input(serve):
    url, _ = serve("sent_px")
    report = _probe(url, codecs=["qwen25vl", "qwen3vl", "qwen2vl"])
    assert report.best_frame == "sent_px"
    assert report.frames["sent_px"]["mean_iou"] > 0.95
    assert report.frames["sent_px"]["mean_iou"] > report.frames["resized_px"]["mean_iou"]
    assert report.frames["rel1000"]["mean_iou"] < 0.5  # 0-1000 on a 224-px image: far off
    assert "sent_px" in report.recommendation


def test_the_image_limit_and_truncation_are_found(serve):
    url, requests = serve("rel1000", image_limit=2, truncate_after=70)
    report = _probe(url, codecs=["qwen2vl"], max_images=8)
    limit = report.images_per_prompt
    assert (limit["max_accepted"], limit["refused_at"], limit["tried"]) == (2, 3, [1, 2, 3, 4])
    assert "At most 2 image(s)" in limit["refusal"]
    assert report.n_truncated == len(CASES)
    assert all(a.truncated for a in report.answers)
    assert "stopped at max_tokens=64: raise max_tokens" in report.recommendation
    assert "at most 2 image(s) per prompt: k <= 1" in report.recommendation
    # every probe request was a zero-shot prompt with one image, greedy, max_tokens as given
    assert all(r["max_tokens"] == 64 and r["temperature"] == 0 for r in requests)


def test_frames_read_numbers_of_any_syntax():
    assert number_quads("<loc0256><loc0128><loc0768><loc0640> effusion") == [(256, 128, 768, 640)]
    assert number_quads('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]') == [(1, 2, 3, 4)]
    assert number_quads("<patch_index_0012><patch_index_1000> <loc_5><loc_6>") == [(12, 1000, 5, 6)]
    assert number_quads("[1, 2, 3, 4], [5, 6, 7") == [(1, 2, 3, 4)]  # cut-off box dropped
    (box,) = frame_boxes("rel1000_yx", [(200, 100, 600, 500)], (100, 100))
    assert box.to_list() == [0.1, 0.2, 0.5, 0.6]
    (box,) = frame_boxes("sent_px", [(10, 20, 50, 60)], (100, 200))
    assert box.to_list() == [0.1, 0.1, 0.5, 0.3]
    assert frame_boxes("rel100", [(5, 5, 5, 50)], (100, 100)) == []  # no area: dropped
    assert set(FRAMES) >= {"rel1000", "rel1000_yx", "resized_px", "sent_px", "normalized"}


def test_probe_cases_are_deterministic_with_large_findings():
    a, b = probe_cases(0.25), probe_cases(0.25)
    assert [c.image.tobytes() for c in a] == [c.image.tobytes() for c in b]
    assert {c.name for c in a} == {"square", "portrait", "landscape", "letterboxed"}
    assert len({c.phrase for c in a}) == 4
    assert all(sum(x.area for x in c.boxes) > 0.05 for c in a)
    boxed = next(c for c in probe_cases(1.0) if c.name == "letterboxed")
    assert boxed.size == (448, 448)
    assert boxed.image.getpixel((224, 5)) == (0, 0, 0)  # the black bar above the radiograph


def test_cli_prints_json_and_a_bad_url_is_one_line(serve, tmp_path):
    url, _ = serve("rel1000")
    out = tmp_path / "probe.json"
    cmd = [sys.executable, "-m", "ricl", "probe", "--base-url", url, "--model", "fake",
           "--codec", "qwen2vl", "--codec", "json", "--scale", "0.5", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "recommendation: use codec=qwen2vl" in done.stdout
    data = json.loads(out.read_text())
    assert data["recommended_codec"] == "qwen2vl" and set(data["codecs"]) == {"qwen2vl", "json"}
    bad = subprocess.run([sys.executable, "-m", "ricl", "probe", "--base-url",
                          "http://127.0.0.1:9/v1", "--model", "x"],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "cannot reach" in bad.stderr
