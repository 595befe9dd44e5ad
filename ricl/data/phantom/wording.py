"""Site wordings of positive sentences, and sentences that name the finding type only.

:func:`~ricl.data.phantom.sentences.positive_sentence` is the ``standard`` wording with
the location (the default site uses nothing else). :func:`styled_sentence` writes every
other case: the ``standard`` wording without the location ("Small nodule." / "Nódulo
pequeño."), and the ``terse`` ("Nodule: right upper lobe."), ``verbose`` ("There is a
nodule in the right upper lobe, which should be correlated clinically.") and
``structured`` ("Finding: nodule. Location: right upper lobe.") wordings, each with or
without the location, always in English and Spanish alike. A sentence without the
location has none of the words of :data:`LOCATION_WORDS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ricl.data.phantom.sentences import _LOC, _PROGRESSION, _SIZE_EN, _SIZE_ES, _cap, _pick

__all__ = ["LOCATION_WORDS", "has_location_word", "styled_sentence"]

# label -> (English noun, English with its article, Spanish noun, Spanish with its article)
_NOUN: dict[str, tuple[str, str, str, str]] = {
    "nodule": ("nodule", "a nodule", "nódulo", "un nódulo"),
    "mass": ("mass", "a mass", "masa", "una masa"),
    "calcified granuloma": (
        "calcified granuloma",
        "a calcified granuloma",
        "granuloma calcificado",
        "un granuloma calcificado",
    ),
    "consolidation": ("consolidation", "consolidation", "consolidación", "consolidación"),
    "pneumonia": (
        "pneumonic consolidation",
        "pneumonic consolidation",
        "consolidación neumónica",
        "consolidación neumónica",
    ),
    "atelectasis": ("atelectasis", "atelectasis", "atelectasia", "atelectasia"),
    "laminar atelectasis": (
        "laminar atelectasis",
        "laminar atelectasis",
        "atelectasia laminar",
        "atelectasia laminar",
    ),
    "interstitial pattern": (
        "interstitial pattern",
        "an interstitial pattern",
        "patrón intersticial",
        "un patrón intersticial",
    ),
    "pleural effusion": (
        "pleural effusion",
        "a pleural effusion",
        "derrame pleural",
        "derrame pleural",
    ),
    "pneumothorax": ("pneumothorax", "a pneumothorax", "neumotórax", "neumotórax"),
    "cardiomegaly": ("cardiomegaly", "cardiomegaly", "cardiomegalia", "cardiomegalia"),
    "hilar enlargement": (
        "hilar enlargement",
        "hilar enlargement",
        "aumento hiliar",
        "aumento hiliar",
    ),
}
# non-lobe zones: (English noun, Spanish with its article)
_ZONE: dict[str, tuple[str, str]] = {
    "right apex": ("right apex", "el vértice derecho"),
    "left apex": ("left apex", "el vértice izquierdo"),
    "right hilum": ("right hilum", "el hilio derecho"),
    "left hilum": ("left hilum", "el hilio izquierdo"),
    "right costophrenic angle": ("right costophrenic angle", "el seno costofrénico derecho"),
    "left costophrenic angle": ("left costophrenic angle", "el seno costofrénico izquierdo"),
}
# bilateral findings, by their right-side zone: (English phrase, Spanish phrase)
_BOTH: dict[str, tuple[str, str]] = {
    "right costophrenic angle": ("both costophrenic angles", "ambos senos costofrénicos"),
    "right hilum": ("both hila", "ambos hilios"),
    "right lower lobe": ("both lower lobes", "ambos lóbulos inferiores"),
}
# per wording: (English templates, Spanish templates) with the location, then without.
# fields: {type} {Type} {a_type} (English), {type} {Type} {un_type} (Spanish), {loc} {Loc}
# (bare noun phrase), {the_loc} (with its article)
_WITH: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "terse": (("{Type}: {loc}.", "{Loc} {type}."), ("{Type}: {loc}.", "{Type} en {the_loc}.")),
    "verbose": (
        (
            "There is {a_type} in {the_loc}, which should be correlated clinically.",
            "Findings are consistent with {a_type} projecting over {the_loc}.",
            "On this frontal radiograph, {a_type} is seen in {the_loc}.",
        ),
        (
            "Se observa {un_type} en {the_loc}, a correlacionar con la clínica.",
            "Hallazgos compatibles con {un_type} en {the_loc}.",
            "En la proyección frontal se aprecia {un_type} en {the_loc}.",
        ),
    ),
    "structured": (
        ("Finding: {type}. Location: {loc}.",),
        ("Hallazgo: {type}. Localización: {loc}.",),
    ),
}
_WITHOUT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "standard": (("{Type}.",), ("{Type}.",)),
    "terse": (("{Type}.",), ("{Type}.",)),
    "verbose": (
        (
            "There is {a_type}, which should be correlated clinically.",
            "Findings are consistent with {a_type}.",
            "On this frontal radiograph, {a_type} is seen.",
        ),
        (
            "Se observa {un_type}, a correlacionar con la clínica.",
            "Hallazgos compatibles con {un_type}.",
            "En la proyección frontal se aprecia {un_type}.",
        ),
    ),
    "structured": (("Finding: {type}.",), ("Hallazgo: {type}.",)),
}

#: words that name a location or a side (English and Spanish); type-only sentences have none
_LOCATION_TEXT = """
right left bilateral bilaterally both upper middle mid lower lobe lobes zone zones lingula
lingular segment base bases basal apex apical field fields hilum hila costophrenic angle
angles sided
derecho derecha izquierdo izquierda bilaterales ambos ambas superior medio media inferior
inferiores lóbulo lóbulos língula bibasal vértice campo hilio hilios seno senos
costofrénico costofrénicos
"""
LOCATION_WORDS: frozenset[str] = frozenset(_LOCATION_TEXT.split())
_WORD = re.compile(r"[^\W\d_]+")


def has_location_word(sentence: str) -> bool:
    """True when ``sentence`` holds a word of :data:`LOCATION_WORDS` (case-insensitive)."""
    return any(w in LOCATION_WORDS for w in _WORD.findall(sentence.lower()))


def _strip_article(es: str) -> str:
    for art in ("el ", "la ", "los ", "las "):
        if es.startswith(art):
            return es[len(art) :]
    return es


def _locations(zones: Sequence[str], rng: np.random.Generator) -> tuple[str, str, str, str]:
    """(English bare, English with article, Spanish bare, Spanish with article)."""
    if len(zones) > 1:
        en, es = _BOTH.get(zones[0], ("both lungs", "ambos pulmones"))
        return "bilateral", en, "bilateral", es
    zone = zones[0]
    if zone in _LOC:
        en = _pick(rng, _LOC[zone][0])
        es = _pick(rng, _LOC[zone][2])
    else:
        en, es = _ZONE.get(zone, (zone, zone))
    return en, f"the {en}", _strip_article(es), es


def styled_sentence(
    wording: str,
    with_location: bool,
    ftype: str,
    labels: Sequence[str],
    zones: Sequence[str],
    severity: float,
    cm: float | None,
    progression: str | None,
    rng: np.random.Generator,
) -> tuple[str, str]:
    """``(sentence_en, sentence_es)`` of a positive finding in ``wording`` (one of
    :data:`~ricl.data.phantom.sites.WORDINGS`), naming the location or the type only.

    Arguments as :func:`~ricl.data.phantom.sentences.positive_sentence`; cardiomegaly never
    names a location. The standard wording with the location is not written here.
    """
    key = next((lab for lab in labels[1:] if lab in _NOUN), ftype)
    n_en, a_en, n_es, a_es = _NOUN[key]
    if ftype == "cardiomegaly":
        with_location = False
    if with_location:
        if wording not in _WITH:
            raise ValueError(f"styled_sentence: the {wording!r} wording with location is not here")
        en_t, es_t = _WITH[wording]
        loc_en, the_en, loc_es, the_es = _locations(zones, rng)
    else:
        en_t, es_t = _WITHOUT[wording]
        loc_en = the_en = loc_es = the_es = ""
    en_t, es_t = tuple(en_t), tuple(es_t)
    if wording == "standard" and not with_location:  # sizes, as the standard templates quote
        if ftype in _SIZE_EN:
            en_t, es_t = (*en_t, "{Size} {type}."), (*es_t, "{Type} {size}.")
        if cm is not None:
            en_t, es_t = (*en_t, "A {cm} cm {type}."), (*es_t, "{Type} de {cm} cm.")
    sev = min(2, int(severity * 3))
    size_en = _SIZE_EN.get(ftype, ("small", "moderate", "large"))[sev]
    size_es = _SIZE_ES.get(ftype, ("pequeño", "moderado", "importante"))[sev]
    cm_text = f"{cm:g}" if cm is not None else ""
    en = _pick(rng, en_t).format(
        type=n_en,
        Type=_cap(n_en),
        a_type=a_en,
        loc=loc_en,
        Loc=_cap(loc_en),
        the_loc=the_en,
        Size=_cap(size_en),
        cm=cm_text,
    )
    es = _pick(rng, es_t).format(
        type=n_es,
        Type=_cap(n_es),
        un_type=a_es,
        loc=loc_es,
        the_loc=the_es,
        size=size_es,
        cm=cm_text.replace(".", ","),
    )
    if progression is not None:
        en_p, es_p = _PROGRESSION[progression]
        en = en[:-1] + _pick(rng, en_p)
        es = es[:-1] + _pick(rng, es_p)
    return en, es
