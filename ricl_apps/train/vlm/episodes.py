"""Training episodes rendered exactly as the agent renders a query.

An episode is one training instance (the query: image + phrase + gold boxes) and k
exemplars retrieved for it from the same pool by the project's retriever (leakage guard
on: never the query's study or patient). The prompt is built by
:func:`ricl.prompting.builder.build_prompt` with the configured strategy and codec, the
same images as sent (:meth:`ImageRef.render`), and the model's chat template; the target
is the codec's answer for the gold boxes followed by ``<|im_end|>``. What the model is
trained on is what the agent sends.

Queries are embedded from the index itself (a training study is an exemplar of its own
pool: its stored global vector, and the region vector of its first gold box for the
``location`` selector), so no encoder runs during training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ricl.prompting.messages import ImageRef, codec_frame
from ricl.vlm.hf import messages_to_hf
from ricl_apps.train.vlm.conventions import Convention

if TYPE_CHECKING:
    from ricl.boxes.codecs.base import BoxCodec
    from ricl.prompting.strategies import Strategy
    from ricl.retrieval.exemplars import Exemplar
    from ricl.types import Instance
    from ricl_apps.train.vlm.config import VLMTrainConfig

__all__ = ["Episode", "EpisodeSampler", "Pool", "encode_episode"]


@dataclass
class Pool:
    """A release, its retriever, and its training instances (those with boxes)."""

    name: str
    dataset: Any
    retriever: Any
    instances: list[Instance]
    _by_study: dict[str, int] = field(default_factory=dict)
    _cands: dict[tuple[int, str], list[Exemplar]] = field(default_factory=dict)

    def candidates(self, i: int, selector: str, k: int, seed: int) -> list[Exemplar]:
        """Up to ``k`` exemplars for instance ``i`` (cached per instance and selector)."""
        from ricl.retrieval.retriever import Query

        key = (i, selector)
        if key not in self._cands:
            inst = self.instances[i]
            r = self.retriever
            if not self._by_study:
                self._by_study = {e.study_id: e.exemplar_id for e in r.exemplars}
            eid = self._by_study[inst.study_id]
            vec = None
            if selector in ("fine-grained", "fused"):
                vec = r.store.vectors("global", np.array([eid]))[0]
            elif selector == "location":
                ex = r.exemplars[eid]
                pos = next(j for j, f in enumerate(ex.findings) if f.index == inst.finding_index)
                regions = r.store.regions
                row = np.flatnonzero(
                    (regions[:, 0] == eid) & (regions[:, 1] == pos) & (regions[:, 2] == 0)
                )[0]
                vec = r.store.vectors("regions", np.array([row]))[0]
            if selector == "same-finding":
                self._cands[key] = self._same_finding(inst, max(k, 1), seed + i)
                return self._cands[key][:k]
            if selector == "self":  # the query's own study first (a copy curriculum)
                own = r.exemplars[eid]
                pos = next(j for j, f in enumerate(own.findings) if f.index == inst.finding_index)
                rest = self._same_finding(inst, max(k, 1), seed + i)
                self._cands[key] = [own.with_score(1.0, (pos, 0)), *rest]
                return self._cands[key][:k]
            q = Query(embedding=vec, study_id=inst.study_id, patient_id=inst.patient_id,
                      phrase=inst.phrase)  # fmt: skip
            self._cands[key] = r.retrieve(q, k=max(k, 1), selector=selector, seed=seed)
        return self._cands[key][:k]

    def _same_finding(self, inst: Instance, k: int, seed: int) -> list[Exemplar]:
        """Exemplars (other patients) holding a finding with the query's label AND location,
        from the annotations: the exemplars an ideal location-aware retriever returns. A
        training curriculum only (it reads the answer); shuffled with ``seed``. Each comes
        with ``matched_region`` set, so the demonstration shows that finding."""
        labels, locations = set(inst.labels), set(inst.locations)
        found = [
            e for e in self.retriever.exemplars
            if e.patient_id != inst.patient_id
            and any(labels & set(f.labels) and locations & set(f.locations) for f in e.findings)
        ]  # fmt: skip
        order = np.random.default_rng(seed).permutation(len(found))
        out = []
        for j in order[:k]:  # demonstrate the matching finding (matched_region)
            e = found[j]
            pos = next(n for n, f in enumerate(e.findings)
                       if labels & set(f.labels) and locations & set(f.locations))  # fmt: skip
            out.append(e.with_score(1.0, (pos, 0)))
        return out


@dataclass(frozen=True)
class Episode:
    conversation: list[dict[str, Any]]
    images: list[Any]
    answer: str
    k: int
    selector: str
    convention: Convention | None = None


class EpisodeSampler:
    """Draws episodes: a pool, a query, k and a selector, then the prompt and the target."""

    def __init__(
        self, config: VLMTrainConfig, strategy: Strategy, codec: BoxCodec, pools: list[Pool]
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.codec = codec
        self.pools = pools
        self.side = config.model.image_side
        ep = config.episodes
        kw = np.asarray(ep.k_weights or [1.0] * (ep.k_max + 1), dtype=float)
        self.k_p = kw / kw.sum()
        self.selectors = sorted(ep.selectors)
        sw = np.asarray([ep.selectors[s] for s in self.selectors], dtype=float)
        self.sel_p = sw / sw.sum()
        self._pixels: dict[tuple[str, int], Any] = {}
        sizes = np.asarray([len(p.instances) for p in pools], dtype=float)
        self.pool_p = sizes / sizes.sum()

    def render(self, ref: ImageRef) -> Any:
        key = (str(ref.path), ref.max_side or 0)
        if key not in self._pixels:
            self._pixels[key] = ref.render()
        return self._pixels[key]

    def sample(self, rng: np.random.Generator) -> Episode:
        from ricl.prompting.builder import build_prompt, exemplar_image, query_image

        pool = self.pools[int(rng.choice(len(self.pools), p=self.pool_p))]
        i = int(rng.integers(len(pool.instances)))
        k = int(rng.choice(len(self.k_p), p=self.k_p))
        selector = self.selectors[int(rng.choice(len(self.selectors), p=self.sel_p))]
        inst = pool.instances[i]
        pairs = []
        found = []
        if k > 0:
            found = pool.candidates(i, selector, self.config.episodes.k_max, self.config.seed)[:k]
        spec = self.config.episodes.conventions
        convention = spec.draw(rng) if found and spec is not None else None
        target = inst.boxes if convention is None else convention.boxes(inst.boxes)
        for e in found:
            path = pool.retriever.image_file(e, pool.dataset.images_root)
            if convention is not None:
                e = convention.exemplar(e)
            pairs.append((e, exemplar_image(e, path, codec=self.codec, max_side=self.side)))
        qref = query_image(pool.dataset.images_root / inst.image_path, codec=self.codec,
                           max_side=self.side)  # fmt: skip
        prompt = build_prompt(self.strategy, self.codec, inst.phrase, qref, pairs)
        conv, images = messages_to_hf(prompt.messages, self.render)
        answer = self.codec.format(target, image_size=codec_frame(self.codec, qref),
                                   phrase=inst.phrase)  # fmt: skip
        return Episode(conv, images, answer, len(pairs), selector, convention)


def encode_episode(episode: Episode, processor: Any, end: str = "<|im_end|>") -> dict[str, Any]:
    """Token ids, labels (the answer and ``end`` only), pixel tensors of one episode.

    Raises ValueError when the answer's tokens do not end the sequence as tokenized alone
    (a chat template or tokenizer that merges across the boundary)."""
    prompt = processor.apply_chat_template(
        episode.conversation, tokenize=False, add_generation_prompt=True
    )
    target = episode.answer + end
    enc = processor(text=[prompt + target], images=episode.images or None, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    ans = processor.tokenizer(target, add_special_tokens=False)["input_ids"]
    if ids[-len(ans) :] != ans:
        raise ValueError(f"answer tokens do not end the sequence: {target!r}")
    labels = [-100] * (len(ids) - len(ans)) + ans
    out = {"input_ids": ids, "labels": labels,
           "mm_token_type_ids": enc["mm_token_type_ids"][0].tolist()}  # fmt: skip
    if episode.images:
        out["pixel_values"] = enc["pixel_values"]
        out["image_grid_thw"] = enc["image_grid_thw"]
    return out


def load_pools(config: VLMTrainConfig) -> list[Pool]:
    """The configured training pools (datasets, retrievers without encoders, instances)."""
    from ricl.retrieval.retriever import Retriever

    pools = []
    for src in config.sources:
        ds = src.open(read_image_sizes=False)
        retriever = Retriever(src.index, encoder=None, seed=config.seed)
        instances = [i for i in ds.select(src.split) if i.boxes]
        pools.append(Pool(str(Path(src.root).name), ds, retriever, instances))
    return pools
