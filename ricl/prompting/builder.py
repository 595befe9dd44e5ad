"""Compose a strategy, a box codec, the query and its exemplars into chat messages.

Images are placed by templates through markers: ``{{ query.image }}`` and
``{{ ex.image }}`` render to a private-use marker that is split back out into an
:class:`ImagePart`. Every image offered must be placed exactly once (a template that
drops the query image, or shows an exemplar twice, is a :class:`PromptTemplateError`).

Exemplar answers are the codec's own format of the exemplar's boxes, in the frame of the
exemplar image AS SENT (see :func:`ricl.prompting.messages.codec_frame`); what the model
reads in a demonstration is exactly what it should write for the query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ricl.prompting.demos import Demo, pick_demo
from ricl.prompting.messages import (
    ImagePart,
    ImageRef,
    Message,
    TextPart,
    codec_frame,
    messages_fingerprint,
)
from ricl.prompting.strategies import PromptTemplateError, Strategy

if TYPE_CHECKING:
    from ricl.boxes.codecs.base import BoxCodec
    from ricl.retrieval.exemplars import Exemplar

__all__ = ["Prompt", "build_prompt", "exemplar_image", "query_image"]

_MARK = "\ue000img{}\ue000"
_MARK_RE = re.compile("\ue000img(\\d+)\ue000")


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt: the messages, the demos in prompt order, and identities."""

    messages: tuple[Message, ...]
    demos: tuple[Demo, ...]
    query: ImageRef
    strategy: str
    strategy_version: int
    codec: str
    fingerprint: str

    @property
    def images(self) -> list[ImageRef]:
        """Every image in the order the model receives them."""
        return [img for m in self.messages for img in m.images]


def query_image(image: Any, *, codec: BoxCodec, max_side: int | None) -> ImageRef:
    """The :class:`ImageRef` of a query: a path (str/Path) or an in-memory image (PIL,
    uint8 array, LoadedImage). Paths are read for their size only (header)."""
    if isinstance(image, (str, Path)):
        from ricl.data.images import read_image_size

        path = Path(image).resolve()
        size = read_image_size(path)
        return ImageRef(
            "query", size, path=path, transform=codec.image_transform(size), max_side=max_side
        )
    from ricl.data.images import to_pil_rgb

    pil = to_pil_rgb(image)
    size = (int(pil.size[0]), int(pil.size[1]))
    return ImageRef(
        "query", size, image=pil, transform=codec.image_transform(size), max_side=max_side
    )


def exemplar_image(
    exemplar: Exemplar, path: Path, *, codec: BoxCodec, max_side: int | None
) -> ImageRef:
    """The :class:`ImageRef` of an exemplar whose image file is ``path``."""
    size = exemplar.image_size
    if size is None:
        from ricl.data.images import read_image_size

        size = read_image_size(path)
    return ImageRef(
        "exemplar",
        (int(size[0]), int(size[1])),
        path=path,
        transform=codec.image_transform(size),
        max_side=max_side,
        exemplar_id=exemplar.exemplar_id,
        study_id=exemplar.study_id,
    )


def build_prompt(
    strategy: Strategy,
    codec: BoxCodec,
    phrase: str,
    query: ImageRef,
    exemplars: Sequence[tuple[Exemplar, ImageRef | None]] = (),
) -> Prompt:
    """Render ``strategy`` for one query.

    ``exemplars``: best first, each with its image (None is allowed only for text-only
    strategies). ``zero_shot`` strategies ignore them. The strategy's ``order`` decides
    whether the most similar exemplar comes first or right before the query.

    Raises PromptTemplateError (undefined variable, misplaced images, missing image).
    """
    if strategy.zero_shot:
        exemplars = ()
    pairs = list(exemplars)
    if strategy.order == "most-similar-last":
        pairs.reverse()
    images: list[ImageRef] = [query]
    demos: list[Demo] = []
    ex_vars: list[dict[str, Any]] = []
    for i, (exemplar, ref) in enumerate(pairs, start=1):
        demo = pick_demo(exemplar, phrase)
        demos.append(demo)
        frame_ref = ref
        if strategy.exemplar_images:
            if ref is None:
                raise PromptTemplateError(
                    f"{strategy.source}: exemplar {exemplar.exemplar_id} has no image, but the "
                    "strategy shows exemplar images"
                )
        elif ref is None:
            frame_ref = ImageRef("exemplar", exemplar.image_size or (1, 1))

        def answer(boxes: Sequence[Any], phrase_: str, r: ImageRef = frame_ref) -> str:
            return codec.format(boxes, image_size=codec_frame(codec, r), phrase=phrase_)

        var: dict[str, Any] = {
            "index": i,
            "phrase": demo.finding.phrase,
            "answer": answer(demo.finding.boxes, demo.finding.phrase),
            "score": exemplar.score,
            "labels": list(demo.finding.labels),
            "other_findings": [
                {"phrase": f.phrase, "answer": answer(f.boxes, f.phrase)} for f in demo.others
            ]
            if strategy.show_other_findings
            else [],
        }
        if strategy.exemplar_images and ref is not None:
            var["image"] = _MARK.format(len(images))
            images.append(ref)
        ex_vars.append(var)
    common = {
        "format_hint": codec.format_hint,
        "codec": codec.name,
        "k": len(ex_vars),
        "exemplars": ex_vars,
        "query": {"image": _MARK.format(0), "phrase": phrase},
    }
    turns: list[tuple[str, str]] = []
    if strategy.system:
        turns.append(("system", strategy.render("system", common)))
    if strategy.layout == "multi-turn":
        for var in ex_vars:
            turns.append(("user", strategy.render("exemplar_user", {**common, "exemplar": var})))
            turns.append(
                ("assistant", strategy.render("exemplar_assistant", {**common, "exemplar": var}))
            )
        turns.append(("user", strategy.render("query_user", common)))
    else:
        turns.append(("user", strategy.render("user", common)))
    messages = tuple(Message(role, _split(text, images)) for role, text in turns)  # type: ignore[arg-type]
    _check_images(strategy, messages, images)
    return Prompt(
        messages=messages,
        demos=tuple(demos),
        query=query,
        strategy=strategy.name,
        strategy_version=strategy.version,
        codec=codec.name,
        fingerprint=messages_fingerprint(messages),
    )


def _split(text: str, images: list[ImageRef]) -> tuple[TextPart | ImagePart, ...]:
    parts: list[TextPart | ImagePart] = []
    pos = 0
    for m in _MARK_RE.finditer(text):
        if m.start() > pos:
            parts.append(TextPart(text[pos : m.start()]))
        parts.append(ImagePart(images[int(m.group(1))]))
        pos = m.end()
    if pos < len(text):
        parts.append(TextPart(text[pos:]))
    return tuple(parts)


def _check_images(
    strategy: Strategy, messages: tuple[Message, ...], images: list[ImageRef]
) -> None:
    placed = [id(img) for m in messages for img in m.images]
    for i, img in enumerate(images):
        n = placed.count(id(img))
        if n != 1:
            who = "the query image" if i == 0 else f"exemplar image {img.exemplar_id}"
            raise PromptTemplateError(
                f"{strategy.source}: {who} is placed {n} times; every image offered to a "
                "template must be placed exactly once"
            )
    for m in messages:
        if m.role != "user" and m.images:
            raise PromptTemplateError(f"{strategy.source}: images may only appear in user turns")
