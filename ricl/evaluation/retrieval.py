"""Retrieval evaluation of an encoder: recall and location-aware precision at k.

The core is pure numpy on L2-normalized embeddings: exact brute-force inner product,
computed in float64 over chunks of ``chunk_size`` queries so memory stays at
``O(chunk_size * n_gallery)``. Ranking is by descending similarity, ties broken by the
lower gallery index (stable), so results do not depend on the chunk size.

Definitions (every metric averages over the queries it keeps; NaN when it keeps none):

* ``R@k``: share of queries with at least one relevant item in the top k. Queries with
  no relevant item are skipped (they cannot be answered).
* ``loc_P@k`` / ``label_P@k``: for a query image with at least one finding key, the share
  of its top-k gallery images that share a ``(label, location)`` key with it (``loc``) or
  only a label (``label``). The denominator is the number of items actually returned,
  ``min(k, n_gallery - n_excluded)``; gallery images without findings are misses.
* ``region_P@k`` / ``region_label_P@k``: the same over gold regions, each region carrying
  the key set of its finding (a box of a finding with several labels/locations matches
  any region whose key set intersects its own).

``exclude[q]`` lists gallery indices never returned for query ``q`` (same patient:
leakage guard). Finding keys: see :func:`finding_keys`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ricl.retrieval.ranking import DEFAULT_CHUNK, topk_indices
from ricl.types import Finding, Study

if TYPE_CHECKING:
    from ricl.encoders.base import Encoder
    from ricl.types import Box

__all__ = [
    "evaluate_retrieval",
    "finding_keys",
    "image_text_recall",
    "location_precision_at_k",
    "recall_at_k",
    "region_precision_at_k",
    "same_patient_exclusion",
    "study_keys",
    "topk_indices",
]

Key = tuple[str, str]
KeySet = AbstractSet[Key]


# ---------------------------------------------------------------------------- keys
def finding_keys(finding: Finding) -> frozenset[Key]:
    """``{(label, location)}`` of a positive finding with boxes; empty otherwise.

    A finding without locations gives ``(label, "")``; one without labels gives nothing.
    """
    if not finding.abnormal or not finding.boxes:
        return frozenset()
    locations = finding.locations or ("",)
    return frozenset((lab, loc) for lab in finding.labels for loc in locations)


def study_keys(study: Study) -> frozenset[Key]:
    """Union of :func:`finding_keys` over a study's findings."""
    return frozenset().union(*(finding_keys(f) for f in study.findings))


# ---------------------------------------------------------------------------- ranking
def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------- metrics
def recall_at_k(
    query_emb: np.ndarray,
    gallery_emb: np.ndarray,
    relevant: Sequence[AbstractSet[int]],
    ks: Sequence[int] = (1, 5, 10),
    exclude: Sequence[AbstractSet[int]] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """``{"R@k": share of queries with a relevant item in the top k}``.

    ``relevant[q]``: indices of the gallery items relevant to query q (empty -> skipped).
    """
    if len(relevant) != len(query_emb):
        raise ValueError(f"relevant has {len(relevant)} entries for {len(query_emb)} queries")
    top = topk_indices(query_emb, gallery_emb, max(ks), exclude, chunk_size)
    kept = [qi for qi, rel in enumerate(relevant) if rel]
    return {
        f"R@{k}": _mean([float(any(int(i) in relevant[qi] for i in top[qi, :k])) for qi in kept])
        for k in ks
    }


def _text_groups(text_emb: np.ndarray, texts: Sequence[str] | None) -> list[int]:
    """Group id per sentence: equal for identical text (or identical embedding bytes)."""
    if texts is not None and len(texts) != len(text_emb):
        raise ValueError(f"texts has {len(texts)} entries for {len(text_emb)} embeddings")
    keys: list[Any] = (
        [t.strip() for t in texts]
        if texts is not None
        else [np.ascontiguousarray(row).tobytes() for row in np.asarray(text_emb)]
    )
    ids: dict[Any, int] = {}
    return [ids.setdefault(key, len(ids)) for key in keys]


def image_text_recall(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    text_image: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    *,
    texts: Sequence[str] | None = None,
    identical_text_is_relevant: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """Sentence-level retrieval -> ``{"i2t_R@k", ..., "t2i_R@k", ...}``.

    ``image_emb`` ``(n_img, d)``, ``text_emb`` ``(n_txt, d)``, ``text_image[t]`` the image
    of sentence t. i2t: query an image, relevant = its sentences (images without any are
    skipped). t2i: query a sentence, relevant = its image.

    With ``identical_text_is_relevant`` (default), a sentence whose text is identical to a
    relevant sentence is relevant too, in both directions: many sentences ("No pleural
    effusion.") repeat verbatim across images, so a single relevant image is ill-posed.
    Identity is on ``texts`` (stripped) when given, else on exact embedding equality.
    """
    n_img = len(image_emb)
    if len(text_image) != len(text_emb):
        raise ValueError(f"text_image has {len(text_image)} entries for {len(text_emb)} texts")
    if any(not 0 <= i < n_img for i in text_image):
        raise ValueError(f"text_image holds an index outside [0, {n_img})")
    groups = (
        _text_groups(text_emb, texts)
        if identical_text_is_relevant
        else list(range(len(text_image)))
    )
    images_of: dict[int, set[int]] = {}
    texts_of: dict[int, set[int]] = {}
    for t, (img, grp) in enumerate(zip(text_image, groups)):
        images_of.setdefault(grp, set()).add(int(img))
        texts_of.setdefault(grp, set()).add(t)
    img_groups: list[set[int]] = [set() for _ in range(n_img)]
    for t, img in enumerate(text_image):
        img_groups[int(img)].add(groups[t])
    i2t_rel = [set().union(*(texts_of[g] for g in gs)) for gs in img_groups]
    t2i_rel = [images_of[g] for g in groups]
    i2t = recall_at_k(image_emb, text_emb, i2t_rel, ks, chunk_size=chunk_size)
    t2i = recall_at_k(text_emb, image_emb, t2i_rel, ks, chunk_size=chunk_size)
    return {**{f"i2t_{m}": v for m, v in i2t.items()}, **{f"t2i_{m}": v for m, v in t2i.items()}}


def _key_precision(
    top: np.ndarray,
    query_keys: Sequence[KeySet],
    gallery_keys: Sequence[KeySet],
    ks: Sequence[int],
    loc_name: str,
    label_name: str,
) -> dict[str, float]:
    q_labels = [{lab for lab, _ in s} for s in query_keys]
    g_labels = [{lab for lab, _ in s} for s in gallery_keys]
    loc: dict[int, list[float]] = {k: [] for k in ks}
    lab: dict[int, list[float]] = {k: [] for k in ks}
    for qi, qk in enumerate(query_keys):
        if not qk:
            continue
        for k in ks:
            hits = [int(i) for i in top[qi, :k] if i >= 0]
            if not hits:
                continue
            loc[k].append(sum(bool(qk & gallery_keys[i]) for i in hits) / len(hits))
            lab[k].append(sum(bool(q_labels[qi] & g_labels[i]) for i in hits) / len(hits))
    return {f"{loc_name}@{k}": _mean(loc[k]) for k in ks} | {
        f"{label_name}@{k}": _mean(lab[k]) for k in ks
    }


def location_precision_at_k(
    query_emb: np.ndarray,
    gallery_emb: np.ndarray,
    query_findings: Sequence[KeySet],
    gallery_findings: Sequence[KeySet],
    ks: Sequence[int] = (1, 5, 10),
    exclude: Sequence[AbstractSet[int]] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """Image->image precision -> ``{"loc_P@k", ..., "label_P@k", ...}``.

    ``query_emb`` ``(nq, d)``, ``gallery_emb`` ``(ng, d)``; ``*_findings[i]`` the set of
    ``(label, location)`` keys of image i. Queries without keys are skipped.
    """
    if len(query_findings) != len(query_emb) or len(gallery_findings) != len(gallery_emb):
        raise ValueError("one findings set per query and per gallery embedding is required")
    top = topk_indices(query_emb, gallery_emb, max(ks), exclude, chunk_size)
    return _key_precision(top, query_findings, gallery_findings, ks, "loc_P", "label_P")


def _as_keyset(key: Key | KeySet) -> frozenset[Key]:
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(x, str) for x in key):
        return frozenset({key})  # type: ignore[arg-type]
    return frozenset(key)  # type: ignore[arg-type]


def region_precision_at_k(
    query_region_emb: np.ndarray,
    gallery_region_emb: np.ndarray,
    query_keys: Sequence[Key | KeySet],
    gallery_keys: Sequence[Key | KeySet],
    ks: Sequence[int] = (1, 5, 10),
    exclude: Sequence[AbstractSet[int]] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """Region->region precision -> ``{"region_P@k", ..., "region_label_P@k", ...}``.

    ``query_region_emb`` ``(m, d)``, ``gallery_region_emb`` ``(g, d)``. Each key is one
    ``(label, location)`` tuple or a set of them; a hit is a non-empty intersection.
    """
    if len(query_keys) != len(query_region_emb) or len(gallery_keys) != len(gallery_region_emb):
        raise ValueError("one key per query region and per gallery region is required")
    top = topk_indices(query_region_emb, gallery_region_emb, max(ks), exclude, chunk_size)
    qk = [_as_keyset(k) for k in query_keys]
    gk = [_as_keyset(k) for k in gallery_keys]
    return _key_precision(top, qk, gk, ks, "region_P", "region_label_P")


def same_patient_exclusion(queries: Sequence[str], gallery: Sequence[str]) -> list[set[int]]:
    """Per query patient id, the gallery positions of the same patient (to exclude)."""
    by_patient: dict[str, set[int]] = {}
    for gi, p in enumerate(gallery):
        by_patient.setdefault(p, set()).add(gi)
    return [by_patient.get(p, set()) for p in queries]


# ---------------------------------------------------------------------------- driver
def evaluate_retrieval(
    encoder: Encoder,
    gallery_studies: Sequence[Study],
    query_studies: Sequence[Study],
    image_path_fn: Callable[[Study], str | Path],
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 16,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float | int]:
    """Embed gallery (train) and query (test) studies with ``encoder`` and score retrieval.

    Returns one flat dict: ``i2t_R@k``/``t2i_R@k`` (query split, positive findings'
    ``sentence_en``, identical text relevant), ``loc_P@k``/``label_P@k`` (query image ->
    gallery images), ``region_P@k``/``region_label_P@k`` (one region per gold box of a
    keyed finding, carrying the finding's key set), all with same-patient gallery items
    excluded, plus counts. Undefined metrics are NaN.
    """
    d = int(encoder.embed_dim)

    def checked(emb: np.ndarray, n: int) -> np.ndarray:
        arr = np.asarray(emb)
        if arr.shape != (n, d):
            raise ValueError(f"encoder {encoder.name!r} returned {arr.shape}, expected {(n, d)}")
        return arr

    def images(studies: Sequence[Study]) -> np.ndarray:
        if not studies:
            return np.zeros((0, d), np.float32)
        paths = [image_path_fn(s) for s in studies]
        return checked(encoder.encode_images(paths, batch_size=batch_size).embeddings, len(paths))

    g_img, q_img = images(gallery_studies), images(query_studies)
    texts: list[str] = []
    text_image: list[int] = []
    for si, study in enumerate(query_studies):
        for f in study.findings:
            if f.abnormal and f.sentence_en.strip():
                texts.append(f.sentence_en)
                text_image.append(si)
    text_emb = checked(encoder.encode_texts(texts), len(texts)) if texts else np.zeros((0, d))
    out: dict[str, float | int] = {}
    out |= image_text_recall(q_img, text_emb, text_image, ks, texts=texts, chunk_size=chunk_size)
    ex = same_patient_exclusion(
        [s.patient_id for s in query_studies], [s.patient_id for s in gallery_studies]
    )
    q_keys = [study_keys(s) for s in query_studies]
    out |= location_precision_at_k(
        q_img, g_img, q_keys, [study_keys(s) for s in gallery_studies], ks, ex, chunk_size
    )

    def regions(studies: Sequence[Study]) -> tuple[np.ndarray, list[frozenset[Key]], list[str]]:
        # One region per gold box of a keyed finding; it carries the finding's key set.
        paths: list[str | Path] = []
        boxes: list[list[Box]] = []
        keys: list[frozenset[Key]] = []
        patients: list[str] = []
        for study in studies:
            sb = [(b, fk) for f in study.findings if (fk := finding_keys(f)) for b in f.boxes]
            if sb:
                paths.append(image_path_fn(study))
                boxes.append([b for b, _ in sb])
                keys += [fk for _, fk in sb]
                patients += [study.patient_id] * len(sb)
        if not paths:
            return np.zeros((0, d), np.float32), [], []
        return (
            checked(encoder.encode_regions(paths, boxes, batch_size=batch_size), len(keys)),
            keys,
            patients,
        )

    g_reg, g_rkeys, g_rpat = regions(gallery_studies)
    q_reg, q_rkeys, q_rpat = regions(query_studies)
    ex = same_patient_exclusion(q_rpat, g_rpat)
    out |= region_precision_at_k(q_reg, g_reg, q_rkeys, g_rkeys, ks, ex, chunk_size)
    out |= {
        "n_query_images": len(query_studies),
        "n_gallery_images": len(gallery_studies),
        "n_query_sentences": len(texts),
        "n_query_regions": len(q_rkeys),
        "n_gallery_regions": len(g_rkeys),
    }
    return out
