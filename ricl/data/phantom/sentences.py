"""English and Spanish report sentences for phantom findings.

Positive sentences name the finding type and its location with varied wording (several
templates per type, synonyms for every location); negative and normal-study sentences
come from fixed pools. All choices are drawn from the generator passed in, so a seed
fixes every sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "NEGATIVES",
    "NORMAL_LEADS",
    "negative_sentences",
    "normal_sentences",
    "positive_sentence",
]

# location -> (English noun phrases used after "in the", English adjective forms,
#              Spanish phrases with their article)
_LOC: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "right upper lobe": (
        ("right upper lobe", "right upper zone", "right upper lung field"),
        ("right upper lobe", "right upper zone"),
        ("el lóbulo superior derecho", "el campo pulmonar superior derecho"),
    ),
    "right middle lobe": (
        ("right middle lobe", "right mid zone", "right middle lung field"),
        ("right middle lobe", "right mid-zone"),
        ("el lóbulo medio", "el campo pulmonar medio derecho"),
    ),
    "right lower lobe": (
        ("right lower lobe", "right lower zone", "right lung base"),
        ("right lower lobe", "right basal"),
        ("el lóbulo inferior derecho", "la base pulmonar derecha"),
    ),
    "left upper lobe": (
        ("left upper lobe", "left upper zone", "left upper lung field"),
        ("left upper lobe", "left upper zone"),
        ("el lóbulo superior izquierdo", "el campo pulmonar superior izquierdo"),
    ),
    "lingula": (
        ("lingula", "left mid zone", "lingular segment"),
        ("lingular", "left mid-zone"),
        ("la língula", "el campo pulmonar medio izquierdo"),
    ),
    "left lower lobe": (
        ("left lower lobe", "left lower zone", "left lung base"),
        ("left lower lobe", "left basal"),
        ("el lóbulo inferior izquierdo", "la base pulmonar izquierda"),
    ),
}
_SIDE = {"right": ("right", "derecho"), "left": ("left", "izquierdo")}

# per type: (English templates, Spanish templates); fields: {loc} {Loc} {side} {Side} {size}
# {Size} {cm} in English, {loc} {side} {size} {cm} in Spanish
_T: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "nodule": (
        (
            "{Size} nodule in the {loc}.",
            "A {cm} cm nodular opacity projecting over the {loc}.",
            "{Loc} pulmonary nodule.",
            "Nodule of {cm} cm in the {loc}.",
            "Well-defined round nodule in the {loc}.",
            "Solitary pulmonary nodule in the {loc}.",
        ),
        (
            "Nódulo {size} en {loc}.",
            "Opacidad nodular de {cm} cm en {loc}.",
            "Nódulo pulmonar en {loc}.",
            "Nódulo bien definido de {cm} cm en {loc}.",
        ),
    ),
    "mass": (
        (
            "A {cm} cm mass in the {loc}.",
            "Lobulated mass in the {loc}.",
            "{Loc} mass.",
            "Irregular mass projecting over the {loc}, suspicious for neoplasm.",
            "Large pulmonary mass in the {loc}.",
        ),
        (
            "Masa de {cm} cm en {loc}.",
            "Masa lobulada en {loc}.",
            "Masa pulmonar en {loc}.",
            "Masa irregular en {loc}, sospechosa de neoplasia.",
        ),
    ),
    "calcified granuloma": (
        (
            "Calcified granuloma in the {loc}.",
            "{Loc} calcified granuloma.",
            "Small calcified nodule in the {loc}, consistent with a granuloma.",
            "Punctate calcification in the {loc}, likely a granuloma.",
        ),
        (
            "Granuloma calcificado en {loc}.",
            "Nódulo calcificado en {loc}, compatible con granuloma.",
            "Calcificación puntiforme en {loc}, probable granuloma.",
        ),
    ),
    "consolidation": (
        (
            "Consolidation in the {loc}.",
            "{Loc} consolidation.",
            "Patchy airspace opacity in the {loc}.",
            "Alveolar consolidation in the {loc}.",
        ),
        (
            "Consolidación en {loc}.",
            "Opacidad alveolar parcheada en {loc}.",
            "Consolidación alveolar en {loc}.",
        ),
    ),
    "pneumonia": (
        (
            "{Loc} consolidation consistent with pneumonia.",
            "Pneumonic consolidation in the {loc}.",
            "Airspace consolidation in the {loc}, suggestive of pneumonia.",
        ),
        ("Consolidación en {loc} compatible con neumonía.", "Consolidación neumónica en {loc}."),
    ),
    "atelectasis": (
        (
            "Atelectasis in the {loc}.",
            "{Loc} subsegmental atelectasis.",
            "Atelectatic band in the {loc}.",
            "Wedge-shaped atelectasis in the {loc}.",
        ),
        (
            "Atelectasia en {loc}.",
            "Atelectasia subsegmentaria en {loc}.",
            "Banda atelectásica en {loc}.",
        ),
    ),
    "laminar atelectasis": (
        (
            "Linear atelectasis in the {loc}.",
            "Plate-like atelectasis in the {loc}.",
            "{Loc} laminar atelectasis.",
        ),
        ("Atelectasia laminar en {loc}.", "Atelectasia lineal en {loc}."),
    ),
    "interstitial pattern": (
        (
            "Interstitial pattern in the {loc}.",
            "{Loc} reticular interstitial opacities.",
            "Increased interstitial markings in the {loc}.",
        ),
        ("Patrón intersticial en {loc}.", "Aumento de la trama intersticial en {loc}."),
    ),
    "pleural effusion": (
        (
            "{Size} {side} pleural effusion.",
            "{Side} pleural effusion.",
            "Blunting of the {side} costophrenic angle due to pleural effusion.",
            "{Size} {side}-sided pleural effusion.",
        ),
        (
            "Derrame pleural {side} {size}.",
            "Derrame pleural {side}.",
            "Pinzamiento del seno costofrénico {side} por derrame pleural.",
        ),
    ),
    "pneumothorax": (
        (
            "{Side} apical pneumothorax.",
            "{Size} {side} pneumothorax.",
            "{Side} pneumothorax with a visible pleural line at the apex.",
            "{Size} apical pneumothorax on the {side}.",
        ),
        (
            "Neumotórax apical {side}.",
            "Neumotórax {side} {size}.",
            "Neumotórax {side} con línea pleural visible en el vértice.",
        ),
    ),
    "cardiomegaly": (
        (
            "Cardiomegaly.",
            "{Size} cardiomegaly.",
            "Enlarged cardiac silhouette.",
            "The cardiac silhouette is enlarged.",
            "Increased cardiothoracic ratio.",
        ),
        (
            "Cardiomegalia.",
            "Cardiomegalia {size}.",
            "Aumento de la silueta cardiaca.",
            "Índice cardiotorácico aumentado.",
        ),
    ),
    "hilar enlargement": (
        (
            "{Side} hilar enlargement.",
            "Enlarged {side} hilum.",
            "Prominent {side} hilar region.",
            "{Side} hilar prominence, possibly adenopathy.",
        ),
        ("Aumento del hilio {side}.", "Hilio {side} prominente.", "Engrosamiento hiliar {side}."),
    ),
}
_BILATERAL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pleural effusion": (
        (
            "Bilateral pleural effusion.",
            "{Size} bilateral pleural effusions.",
            "Blunting of both costophrenic angles due to pleural effusions.",
        ),
        (
            "Derrame pleural bilateral.",
            "Derrame pleural bilateral {size}.",
            "Pinzamiento de ambos senos costofrénicos por derrame pleural.",
        ),
    ),
    "hilar enlargement": (
        ("Bilateral hilar enlargement.", "Both hila are enlarged.", "Prominent hila bilaterally."),
        ("Aumento hiliar bilateral.", "Hilios prominentes bilaterales."),
    ),
    "consolidation": (
        ("Bilateral lower lobe consolidation.", "Patchy consolidation in both lung bases."),
        ("Consolidación en ambos lóbulos inferiores.", "Consolidación bibasal."),
    ),
    "pneumonia": (
        ("Bilateral basal consolidation consistent with pneumonia.",),
        ("Consolidación bibasal compatible con neumonía bilateral.",),
    ),
    "interstitial pattern": (
        (
            "Bilateral basal interstitial pattern.",
            "Reticular interstitial pattern in both lower zones.",
        ),
        ("Patrón intersticial bibasal.", "Patrón intersticial reticular en ambas bases."),
    ),
}
_SIZE_EN = {
    "nodule": ("Small", "Rounded", "Large"),
    "pleural effusion": ("small", "moderate", "large"),
    "pneumothorax": ("small", "moderate", "large"),
    "cardiomegaly": ("mild", "moderate", "marked"),
}
_SIZE_ES = {
    "nodule": ("pequeño", "redondeado", "grande"),
    "pleural effusion": ("leve", "moderado", "importante"),
    "pneumothorax": ("pequeño", "moderado", "importante"),
    "cardiomegaly": ("leve", "moderada", "importante"),
}
_PROGRESSION: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stable": (
        (", stable compared with the prior study.", ", unchanged from the previous examination."),
        (", sin cambios respecto al estudio previo.", ", estable respecto al previo."),
    ),
    "improved": (
        (
            ", improved since the prior study.",
            ", decreased compared with the previous examination.",
        ),
        (", en mejoría respecto al estudio previo.", ", con disminución respecto al previo."),
    ),
    "worsened": (
        (
            ", increased compared with the prior study.",
            ", worsened since the previous examination.",
        ),
        (", con empeoramiento respecto al estudio previo.", ", de mayor tamaño que en el previo."),
    ),
}

#: negative sentences: (English, Spanish, finding types it rules out)
NEGATIVES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("No pleural effusion.", "Sin derrame pleural.", frozenset({"pleural effusion"})),
    (
        "Costophrenic angles are clear.",
        "Senos costofrénicos libres.",
        frozenset({"pleural effusion"}),
    ),
    ("No pneumothorax.", "No se observa neumotórax.", frozenset({"pneumothorax"})),
    ("No focal consolidation.", "Sin consolidaciones focales.", frozenset({"consolidation"})),
    ("Normal heart size.", "Índice cardiotorácico normal.", frozenset({"cardiomegaly"})),
    (
        "No pulmonary nodules or masses.",
        "Sin nódulos ni masas pulmonares.",
        frozenset({"nodule", "mass", "calcified granuloma"}),
    ),
    (
        "Hila of normal size and morphology.",
        "Hilios de tamaño y morfología normales.",
        frozenset({"hilar enlargement"}),
    ),
    ("No interstitial pattern.", "Sin patrón intersticial.", frozenset({"interstitial pattern"})),
    ("No signs of atelectasis.", "Sin signos de atelectasia.", frozenset({"atelectasis"})),
)
#: first sentence of a normal study: (English, Spanish)
NORMAL_LEADS: tuple[tuple[str, str], ...] = (
    ("No significant abnormalities.", "Sin hallazgos significativos."),
    ("No acute cardiopulmonary findings.", "Sin hallazgos cardiopulmonares agudos."),
    ("Normal chest radiograph.", "Radiografía de tórax normal."),
    ("No radiological abnormalities.", "Sin alteraciones radiológicas."),
)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def positive_sentence(
    ftype: str,
    labels: Sequence[str],
    zones: Sequence[str],
    severity: float,
    cm: float | None,
    progression: str | None,
    rng: np.random.Generator,
) -> tuple[str, str]:
    """``(sentence_en, sentence_es)`` for one positive finding.

    ``zones``: one zone, or two for a bilateral finding; ``labels``: the finding's labels (a
    secondary label such as "pneumonia" selects its own wording); ``cm``: the quoted size of
    round lesions; ``progression``: None or stable/improved/worsened (adds a comparison).
    """
    key = next((lab for lab in labels[1:] if lab in _T), ftype)
    if len(zones) > 1:
        en_t, es_t = _BILATERAL.get(key) or _BILATERAL[ftype]
    else:
        en_t, es_t = _T[key]
    sev = min(2, int(severity * 3))
    size_en = _SIZE_EN.get(ftype, ("small", "moderate", "large"))[sev]
    size_es = _SIZE_ES.get(ftype, ("pequeño", "moderado", "importante"))[sev]
    zone = zones[0]
    side = zone.split()[0] if zone.split()[0] in _SIDE else "right"
    if zone in _LOC:
        nouns, adjs, es_locs = _LOC[zone]
        loc_en, loc_adj, loc_es = _pick(rng, nouns), _pick(rng, adjs), _pick(rng, es_locs)
    else:
        loc_en = loc_adj = loc_es = zone
    cm_text = f"{cm:g}" if cm is not None else ""
    en = _pick(rng, en_t).format(
        loc=loc_en,
        Loc=_cap(loc_adj),
        side=_SIDE[side][0],
        Side=_cap(_SIDE[side][0]),
        size=size_en.lower(),
        Size=_cap(size_en),
        cm=cm_text,
    )
    es_side = _SIDE[side][1]
    es = _pick(rng, es_t).format(
        loc=loc_es, side=es_side, size=size_es, cm=cm_text.replace(".", ",")
    )
    if progression is not None:
        en_p, es_p = _PROGRESSION[progression]
        en = en[:-1] + _pick(rng, en_p)
        es = es[:-1] + _pick(rng, es_p)
    return en, es


def negative_sentences(
    present_types: set[str], k: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """Up to ``k`` distinct negative sentences that do not contradict ``present_types``."""
    pool = [(en, es) for en, es, rules_out in NEGATIVES if not (rules_out & present_types)]
    if k <= 0 or not pool:
        return []
    idx = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
    return [pool[int(i)] for i in idx]


def normal_sentences(rng: np.random.Generator) -> list[tuple[str, str]]:
    """A normal study's sentences: a lead ("No significant abnormalities.") plus 0-2 negatives."""
    lead = NORMAL_LEADS[int(rng.choice(len(NORMAL_LEADS), p=[0.5, 0.2, 0.15, 0.15]))]
    return [lead, *negative_sentences(set(), int(rng.integers(0, 3)), rng)]
