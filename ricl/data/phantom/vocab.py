"""The phantom's vocabulary: finding types, locations, which zones each type may occupy,
how often each type (and each optional second label) is drawn, and the label groups.

Pure constants, no dependencies: the planner (:mod:`~ricl.data.phantom.plan`) draws from
these tables and the release writer maps labels to their groups.
"""

from __future__ import annotations

__all__ = [
    "BILATERAL_ZONES",
    "FINDING_TYPES",
    "LABELS",
    "LABEL_GROUPS",
    "LOBES",
    "LOCATIONS",
    "SECONDARY_LABELS",
    "TYPE_WEIGHTS",
    "TYPE_ZONES",
]

FINDING_TYPES: tuple[str, ...] = (
    "nodule",
    "mass",
    "calcified granuloma",
    "consolidation",
    "atelectasis",
    "interstitial pattern",
    "pleural effusion",
    "pneumothorax",
    "cardiomegaly",
    "hilar enlargement",
)
LOBES: tuple[str, ...] = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "lingula",
    "left lower lobe",
)
LOCATIONS: tuple[str, ...] = LOBES + (
    "right apex",
    "left apex",
    "right hilum",
    "left hilum",
    "right costophrenic angle",
    "left costophrenic angle",
    "cardiac",
    "bilateral",
)
TYPE_ZONES: dict[str, tuple[str, ...]] = {
    "nodule": LOBES,
    "mass": LOBES,
    "calcified granuloma": LOBES,
    "consolidation": LOBES,
    "atelectasis": (
        "right middle lobe",
        "right lower lobe",
        "lingula",
        "left lower lobe",
        "right upper lobe",
    ),
    "interstitial pattern": ("right lower lobe", "left lower lobe", "right middle lobe", "lingula"),
    "pleural effusion": ("right costophrenic angle", "left costophrenic angle"),
    "pneumothorax": ("right apex", "left apex"),
    "cardiomegaly": ("cardiac",),
    "hilar enlargement": ("right hilum", "left hilum"),
}
#: types that can be bilateral (one sentence, two boxes): the two zones, and how often.
BILATERAL_ZONES: dict[str, tuple[tuple[str, str], float]] = {
    "pleural effusion": (("right costophrenic angle", "left costophrenic angle"), 0.35),
    "hilar enlargement": (("right hilum", "left hilum"), 0.4),
    "consolidation": (("right lower lobe", "left lower lobe"), 0.15),
    "interstitial pattern": (("right lower lobe", "left lower lobe"), 0.6),
}
#: how often each type is drawn (relative).
TYPE_WEIGHTS: dict[str, float] = {
    "nodule": 0.15,
    "mass": 0.07,
    "calcified granuloma": 0.08,
    "consolidation": 0.14,
    "atelectasis": 0.10,
    "interstitial pattern": 0.06,
    "pleural effusion": 0.14,
    "pneumothorax": 0.07,
    "cardiomegaly": 0.12,
    "hilar enlargement": 0.07,
}
#: an optional second label of a finding, and how often it is added.
SECONDARY_LABELS: dict[str, tuple[str, float]] = {
    "consolidation": ("pneumonia", 0.3),
    "atelectasis": ("laminar atelectasis", 0.4),
    "interstitial pattern": ("reticular interstitial pattern", 0.3),
}
#: label -> label group (also the "Normal" pseudo-label of normal studies).
LABEL_GROUPS: dict[str, str] = {
    "nodule": "nodule/mass",
    "mass": "nodule/mass",
    "calcified granuloma": "calcification",
    "consolidation": "lung opacity",
    "pneumonia": "lung opacity",
    "atelectasis": "lung opacity",
    "laminar atelectasis": "lung opacity",
    "interstitial pattern": "interstitial pattern",
    "reticular interstitial pattern": "interstitial pattern",
    "pleural effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
    "cardiomegaly": "cardiomegaly",
    "hilar enlargement": "hilar enlargement",
    "Normal": "Normal",
}
LABELS: tuple[str, ...] = tuple(k for k in LABEL_GROUPS if k != "Normal")
