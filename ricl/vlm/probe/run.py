"""Which codec and box frame does a served VLM speak? Asked before an evaluation spends GPU hours.

:func:`probe_server` sends the probe images (:mod:`ricl.vlm.probe.cases`: large known
findings on square, portrait, landscape and letterboxed images) with each candidate codec's
zero-shot prompt, and scores every answer two ways: parsed by that codec (the IoU an
evaluation with that codec would see), and read in each frame hypothesis
(:data:`~ricl.vlm.probe.frames.FRAMES`), which says WHY a codec fails (pixels of the
resized input, y first, ...). It also finds the images-per-prompt limit the server
enforces (vLLM's ``--limit-mm-per-prompt``; its default is one) and counts answers cut off
at ``max_tokens``. The result is a :class:`ProbeReport` with a one-line recommendation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

from ricl.vlm.errors import VLMServerError
from ricl.vlm.probe.cases import ProbeCase, probe_cases
from ricl.vlm.probe.frames import FRAMES, frame_boxes, number_quads

if TYPE_CHECKING:
    from ricl.boxes.codecs.qwen25vl import Qwen25VLCodec
    from ricl.prompting.messages import ImageRef
    from ricl.types import Box
    from ricl.vlm.base import VLMBackend

__all__ = ["ProbeAnswer", "ProbeReport", "probe_server"]

#: a codec "explains" the answers when its mean IoU on the probe images reaches this
GOOD_IOU = 0.3
_IMAGE_COUNTS = (1, 2, 4, 8, 16, 32)
_TIE = 0.02  # IoU differences below this are rounding of one grid to another


@dataclass(frozen=True)
class ProbeAnswer:
    """One answer: the ``case`` image asked with ``codec``'s zero-shot prompt. ``iou``: union
    IoU of that codec's parse against the gold; ``frame_iou``: the IoU of the answer's
    numbers read in each frame; ``truncated``: the server stopped at max_tokens;
    ``syntax``: how close the answer's text is to what the codec writes for the gold
    (difflib ratio, 0-1: breaks ties between codecs that read the same numbers)."""

    case: str
    codec: str
    text: str
    status: str
    iou: float
    truncated: bool
    frame_iou: dict[str, float]
    syntax: float = 0.0
    error: str | None = None


@dataclass
class ProbeReport:
    """What :func:`probe_server` found (``to_dict()`` is the JSON output).

    ``codecs``: per codec, mean IoU and status counts over the probe images; ``frames``:
    per frame, mean IoU over answers that hold numbers; ``images_per_prompt``:
    ``max_accepted`` (None if the server refused every count tried), ``refused_at``
    (None if every count up to the tried maximum passed) and the counts ``tried``.
    """

    model: str
    max_tokens: int | None
    answers: list[ProbeAnswer]
    codecs: dict[str, dict[str, Any]]
    frames: dict[str, dict[str, Any]]
    images_per_prompt: dict[str, Any]
    recommended_codec: str | None
    best_frame: str | None
    recommendation: str
    n_truncated: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _unsquare(boxes: list[Box], ref: ImageRef) -> list[Box]:
    if ref.transform is None:
        return boxes
    return [b for b in (ref.transform.box_from_square(x) for x in boxes) if b is not None]


def _frame_ious(text: str, ref: ImageRef, gold: Sequence[Box], resize: Any) -> dict[str, float]:
    from ricl.boxes.geometry import union_iou

    quads = number_quads(text)
    if not quads:
        return {}
    return {
        name: round(
            union_iou(_unsquare(frame_boxes(name, quads, ref.sent_size, resize), ref), gold), 4
        )
        for name in FRAMES
    }


def _ask(backend: VLMBackend, codec: Any, case: ProbeCase, max_side: int | None, resize: Any):
    from ricl.boxes.geometry import union_iou
    from ricl.prompting.builder import build_prompt, query_image
    from ricl.prompting.messages import codec_frame
    from ricl.prompting.strategies import load_strategy
    from ricl.vlm.base import VLMRequest

    ref = query_image(case.image, codec=codec, max_side=max_side)
    prompt = build_prompt(load_strategy("zero-shot"), codec, case.phrase, ref)
    try:
        gen = backend.generate(VLMRequest(prompt, case.phrase, codec))
    except VLMServerError as exc:  # one refused prompt is a finding, not the end of the probe
        return ProbeAnswer(case.name, codec.name, "", "error", 0.0, False, {}, str(exc))
    frame = codec_frame(codec, ref)
    parsed = codec.parse(gen.text, image_size=frame, phrase=case.phrase)
    written = codec.format(case.boxes, image_size=frame, phrase=case.phrase)
    return ProbeAnswer(
        case.name,
        codec.name,
        gen.text,
        parsed.status,
        round(union_iou(parsed.boxes, case.boxes), 4),
        gen.usage.get("finish_reason") == "length",
        _frame_ious(gen.text, ref, case.boxes, resize),
        round(SequenceMatcher(None, written, gen.text).ratio(), 4),
    )


def _accepts(backend: VLMBackend, case: ProbeCase, n: int, max_side: int | None) -> str | None:
    """None when the server answers a prompt with ``n`` images, else why it refused."""
    from ricl.boxes.codecs import get_codec
    from ricl.prompting.builder import Prompt, query_image
    from ricl.prompting.messages import ImagePart, Message, TextPart
    from ricl.vlm.base import VLMRequest

    codec = get_codec("json")
    ref = query_image(case.image, codec=codec, max_side=max_side)
    parts = (*(ImagePart(ref) for _ in range(n)), TextPart("How many images are there?"))
    prompt = Prompt((Message("user", parts),), (), ref, "probe-images", 1, codec.name, "")
    try:
        backend.generate(VLMRequest(prompt, "", codec))
    except VLMServerError as exc:  # TooManyImagesError, or a context too long for n images
        return f"{type(exc).__name__}: {exc}"
    return None


def _image_limit(backend: VLMBackend, case: ProbeCase, upto: int, max_side: int | None):
    tried: dict[int, str | None] = {}
    ok, refused = 0, None
    for n in [c for c in _IMAGE_COUNTS if c < upto] + [upto]:
        tried[n] = _accepts(backend, case, n, max_side)
        if tried[n] is not None:
            refused = n
            break
        ok = n
    while refused is not None and refused - ok > 1:  # bisect between the last pass and fail
        mid = (ok + refused) // 2
        tried[mid] = _accepts(backend, case, mid, max_side)
        ok, refused = (mid, refused) if tried[mid] is None else (ok, mid)
    return {
        "max_accepted": ok or None,
        "refused_at": refused,
        "tried": sorted(tried),
        "refusal": tried[refused] if refused is not None else None,
    }


def _pick(good: dict[str, dict[str, Any]]) -> str | None:
    """The codec with the best IoU; among those within ``_TIE`` of it, the one whose
    written answers look most like the model's (codecs reading the same numbers tie)."""
    if not good:
        return None
    best = max(v["mean_iou"] for v in good.values())
    close = [c for c, v in good.items() if v["mean_iou"] >= best - _TIE]
    return max(close, key=lambda c: (good[c]["syntax_similarity"], good[c]["mean_iou"]))


def _recommend(report: ProbeReport, max_images: int) -> str:
    parts = []
    best = report.recommended_codec
    frame = report.best_frame
    frame_text = f"answers read best as {frame} ({FRAMES[frame][0]})" if frame else "no box numbers"
    if best is not None:
        parts.append(
            f"use codec={best} (mean IoU {report.codecs[best]['mean_iou']:.2f} on the "
            f"probe images); {frame_text}"
        )
    else:
        top = max(report.codecs, key=lambda c: report.codecs[c]["mean_iou"], default=None)
        got = f"best {top} at IoU {report.codecs[top]['mean_iou']:.2f}" if top else "no codec"
        parts.append(f"no codec reads these answers well ({got}); {frame_text}")
    if report.n_truncated:
        parts.append(
            f"{report.n_truncated} answer(s) stopped at max_tokens="
            f"{report.max_tokens}: raise max_tokens"
        )
    limit = report.images_per_prompt
    if limit["max_accepted"] is None:
        parts.append("the server refused every image count tried (a text-only model?)")
    elif limit["refused_at"] is not None:
        n = limit["max_accepted"]
        parts.append(
            f"the server takes at most {n} image(s) per prompt: k <= {n - 1}, or "
            f"vllm serve --limit-mm-per-prompt '{{\"image\": {max_images}}}'"
        )
    return "; ".join(parts)


def probe_server(
    backend: VLMBackend,
    *,
    codecs: Sequence[str] | None = None,
    cases: Sequence[ProbeCase] | None = None,
    max_side: int | None = None,
    max_images: int = 8,
    resize: Qwen25VLCodec | None = None,
) -> ProbeReport:
    """Probe the model behind ``backend`` (usually an ``OpenAIBackend``).

    ``codecs``: candidate codec names (default: every registered codec); ``cases``: probe
    images (default :func:`probe_cases`); ``max_side``: resize bound of the images sent (as
    an agent's ``max_image_side``); ``max_images``: the most images per prompt to try;
    ``resize``: a ``qwen25vl`` codec carrying the server's pixel limits (for the
    ``resized_px`` frame and the ``qwen25vl`` candidate).

    Raises VLMTransportError when the server cannot be reached; a prompt the server
    refuses (HTTP 4xx) is recorded as an ``error`` answer.
    """
    from ricl.boxes.codecs import CODECS, get_codec

    names = list(codecs) if codecs is not None else CODECS.names()
    chosen = [resize if n == "qwen25vl" and resize is not None else get_codec(n) for n in names]
    cases = list(cases) if cases is not None else probe_cases()
    answers = [_ask(backend, c, case, max_side, resize) for c in chosen for case in cases]
    per_codec = {
        c.name: {
            "mean_iou": _mean([a.iou for a in answers if a.codec == c.name]),
            "syntax_similarity": _mean([a.syntax for a in answers if a.codec == c.name]),
            **{
                f"n_{s}": sum(a.status == s and a.codec == c.name for a in answers)
                for s in ("ok", "empty", "parse_error", "error")
            },
        }
        for c in chosen
    }
    frames = {
        f: {
            "mean_iou": _mean([a.frame_iou[f] for a in answers if a.frame_iou]),
            "n": sum(bool(a.frame_iou) for a in answers),
            "description": FRAMES[f][0],
        }
        for f in FRAMES
    }
    good = {c: v for c, v in per_codec.items() if v["mean_iou"] >= GOOD_IOU}
    report = ProbeReport(
        model=str(getattr(backend, "model", backend.name)),
        max_tokens=getattr(backend, "max_tokens", None),
        answers=answers,
        codecs=per_codec,
        frames=frames,
        images_per_prompt=_image_limit(backend, cases[0], max_images, max_side),
        recommended_codec=_pick(good),
        best_frame=max(frames, key=lambda f: frames[f]["mean_iou"])
        if any(v["n"] for v in frames.values())
        else None,
        recommendation="",
        n_truncated=sum(a.truncated for a in answers),
    )
    report.recommendation = _recommend(report, max_images)
    return report
