"""Planning of a phantom release: patients, splits, dates, identifiers, every study's
report (positive, negative and normal sentences, with labels, locations and progression)
and its render spec.

The plan is a function of ``(n_studies, seed, sizes, site)`` only. It is drawn from one
generator, seeded by ``seed`` for the default site and by ``seed`` and the site's
:attr:`~ricl.data.phantom.sites.SiteStyle.stream_key` otherwise (so different sites draw
different patients and identifiers), plus a second generator for the site's choices (which
findings are faint, which sentences omit the location), so the default site's plan is the
historic one, byte for byte. Rendering and writing it is :mod:`~ricl.data.phantom.writer`'s
job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ricl.data.phantom.findings import FindingSpec, StudySpec, size_cm
from ricl.data.phantom.sentences import negative_sentences, normal_sentences, positive_sentence
from ricl.data.phantom.sites import SiteStyle, get_site
from ricl.data.phantom.vocab import (
    BILATERAL_ZONES,
    FINDING_TYPES,
    SECONDARY_LABELS,
    TYPE_WEIGHTS,
    TYPE_ZONES,
)
from ricl.data.phantom.wording import styled_sentence

__all__ = [
    "ASPECTS",
    "DEFAULT_SIZES",
    "PlannedFinding",
    "PlannedStudy",
    "plan_release",
]

DEFAULT_SIZES: tuple[int, ...] = (480, 512, 544)  # long side, px
ASPECTS: tuple[float, ...] = (1.0, 0.9, 1.1, 0.8)  # width / height
P_NORMAL, P_UNGROUNDED, P_SECOND_READER, P_CARRY = 0.25, 0.03, 0.2, 0.6
# the share of inverted studies is the site's invert_fraction (0.03 for the default site)


@dataclass(frozen=True, slots=True)
class PlannedFinding:
    """One report sentence. Positive ones point at ``StudySpec.findings[render_index]``."""

    sentence_en: str
    sentence_es: str
    abnormal: bool
    render_index: int | None = None
    labels: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    progression: str | None = None
    grounded: bool = True
    second_reader: bool = False
    located: bool = True  # False: the sentence names the finding type only


@dataclass(frozen=True, slots=True)
class PlannedStudy:
    """One study of the plan; ``render`` is its image, ``findings`` its report."""

    study_id: str
    image_id: str
    patient_id: str
    sex: str
    birth_year: int
    split: str
    date: dt.date
    previous_study_id: str | None
    previous_image_id: str | None
    render: StudySpec
    findings: tuple[PlannedFinding, ...]
    extra_seed: int

    @property
    def is_normal(self) -> bool:
        return not any(f.abnormal for f in self.findings)


def _digits(rng: np.random.Generator, n: int, used: set[str]) -> str:
    while True:
        s = str(int(rng.integers(1, 10))) + "".join(map(str, rng.integers(0, 10, n - 1)))
        if s not in used:
            used.add(s)
            return s


def _new_finding(rng: np.random.Generator, taken: Sequence[FindingSpec]) -> FindingSpec | None:
    """A random finding whose type+zone does not repeat (or overlap) one already taken."""
    p = np.array([TYPE_WEIGHTS[t] for t in FINDING_TYPES])
    for _ in range(30):
        ftype = FINDING_TYPES[int(rng.choice(len(FINDING_TYPES), p=p / p.sum()))]
        bil = BILATERAL_ZONES.get(ftype)
        zones = (
            bil[0]
            if bil and rng.random() < bil[1]
            else (TYPE_ZONES[ftype][int(rng.integers(len(TYPE_ZONES[ftype])))],)
        )
        if any(t.ftype == ftype and set(t.zones) & set(zones) for t in taken):
            continue
        return FindingSpec(ftype, zones, float(rng.uniform(0.15, 1.0)), int(rng.integers(2**62)))
    return None


@dataclass(frozen=True, slots=True)
class _Site:
    """The site's style and the generator of its own choices (faint, location-free)."""

    style: SiteStyle
    rng: np.random.Generator

    def faint(self, spec: FindingSpec) -> FindingSpec:
        draw = float(self.rng.random())  # drawn for every finding: nested shares across sites
        if spec.ftype == "cardiomegaly" or draw >= self.style.faint_fraction:
            return spec
        return replace(spec, contrast=self.style.faint_level)

    def located(self, spec: FindingSpec) -> bool:
        draw = float(self.rng.random())
        return spec.ftype == "cardiomegaly" or draw >= self.style.no_location_fraction


def _positive(
    rng: np.random.Generator,
    spec: FindingSpec,
    index: int,
    labels: tuple[str, ...] | None,
    progression: str | None,
    site: _Site,
) -> PlannedFinding:
    if labels is None:
        second = SECONDARY_LABELS.get(spec.ftype)
        labels = (spec.ftype, second[0]) if second and rng.random() < second[1] else (spec.ftype,)
    located = site.located(spec)
    args = (spec.ftype, labels, spec.zones, spec.severity, size_cm(spec.ftype, spec.severity))
    if located and site.style.wording == "standard":  # the historic sentences
        en, es = positive_sentence(*args, progression, rng)
    else:
        en, es = styled_sentence(site.style.wording, located, *args, progression, rng)
    grounded = bool(rng.random() >= P_UNGROUNDED)
    locations = spec.zones if len(spec.zones) == 1 else ("bilateral", *spec.zones)
    return PlannedFinding(
        en,
        es,
        True,
        index,
        labels,
        locations,
        progression,
        grounded,
        grounded and bool(rng.random() < P_SECOND_READER),
        located,
    )


def _plan_report(
    rng: np.random.Generator,
    prior: tuple[StudySpec, tuple[PlannedFinding, ...]] | None,
    site: _Site,
) -> tuple[tuple[FindingSpec, ...], tuple[PlannedFinding, ...]]:
    specs: list[FindingSpec] = []
    positives: list[PlannedFinding] = []
    prior_pos = [f for f in prior[1] if f.abnormal] if prior else []
    if prior_pos and rng.random() < P_CARRY:  # the same finding again, with its progression
        old = prior_pos[int(rng.integers(len(prior_pos)))]
        o = prior[0].findings[old.render_index]  # type: ignore[index,union-attr]
        prog = ("stable", "improved", "worsened")[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
        sev = {
            "stable": o.severity,
            "improved": o.severity * rng.uniform(0.5, 0.8),
            "worsened": min(1.0, o.severity * rng.uniform(1.2, 1.6) + 0.05),
        }[prog]
        specs.append(FindingSpec(o.ftype, o.zones, float(sev), o.geom_seed, o.contrast))
        positives.append(_positive(rng, specs[-1], 0, old.labels, prog, site))
    elif rng.random() < P_NORMAL:
        return (), tuple(PlannedFinding(en, es, False) for en, es in normal_sentences(rng))
    n_pos = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    while len(specs) < n_pos:
        spec = _new_finding(rng, specs)
        if spec is None:
            break
        specs.append(site.faint(spec))
        positives.append(_positive(rng, specs[-1], len(specs) - 1, None, None, site))
    present = {s.ftype for s in specs}
    negatives = [
        PlannedFinding(en, es, False)
        for en, es in negative_sentences(present, int(rng.integers(0, 3)), rng)
    ]
    report = positives + negatives
    order = rng.permutation(len(report))
    return tuple(specs), tuple(report[int(i)] for i in order)


def _split_patients(rng: np.random.Generator, n: int) -> list[str]:
    n_test, n_val = round(0.2 * n), round(0.1 * n)
    if n >= 3:
        n_test, n_val = max(1, n_test), max(1, n_val)
    splits = ["test"] * n_test + ["validation"] * n_val + ["train"] * (n - n_test - n_val)
    return [splits[int(i)] for i in np.argsort(rng.permutation(n))]


def plan_release(
    n_studies: int,
    seed: int,
    sizes: int | Sequence[int] = DEFAULT_SIZES,
    site: str | SiteStyle = "default",
) -> list[PlannedStudy]:
    """Plan every study (ids, patients, dates, report, render spec), in release order.

    ``site``: a name of :data:`~ricl.data.phantom.sites.SITES` or a
    :class:`~ricl.data.phantom.sites.SiteStyle` (see :func:`~ricl.data.phantom.sites.get_site`).
    """
    style = get_site(site)
    if n_studies < 0:
        raise ValueError(f"n_studies must be >= 0, got {n_studies}")
    sizes = (int(sizes),) if isinstance(sizes, (int, np.integer)) else tuple(int(x) for x in sizes)
    if not sizes or min(sizes) < 64:
        raise ValueError(f"sizes must be long sides of at least 64 px, got {sizes!r}")
    key = style.stream_key
    rng = np.random.default_rng(seed if style.is_default else [seed, key])
    site_ = _Site(style, np.random.default_rng([seed, key, 1]))
    per_patient: list[int] = []
    while sum(per_patient) < n_studies:
        k = 1 if rng.random() < 0.8 else int(rng.choice([2, 3], p=[0.7, 0.3]))
        per_patient.append(min(k, n_studies - sum(per_patient)))
    splits = _split_patients(rng, len(per_patient))
    used: set[str] = set()
    studies: list[PlannedStudy] = []
    for p, k in enumerate(per_patient):
        patient_id, anatomy_seed = _digits(rng, 16, used), int(rng.integers(2**62))
        sex = "M" if rng.random() < 0.5 else "F"
        date = dt.date(2009, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3100)))
        birth = date.year - int(rng.integers(18, 96))
        prior: PlannedStudy | None = None
        for _ in range(k):
            long = int(sizes[int(rng.integers(len(sizes)))])
            aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
            wh = (long, round(long / aspect)) if aspect >= 1.0 else (round(long * aspect), long)
            specs, report = _plan_report(
                rng, (prior.render, prior.findings) if prior else None, site_
            )
            render = StudySpec(
                wh[0],
                wh[1],
                anatomy_seed,
                int(rng.integers(2**62)),
                bool(rng.random() < style.invert_fraction),
                specs,
                style.magnification,
                style.centre_shift,
                style.contrast,
            )
            study_id = _digits(rng, 32, used)
            image_id = f"{_digits(rng, 30, used)}_{_digits(rng, 6, used)}.png"
            prior = PlannedStudy(
                study_id,
                image_id,
                patient_id,
                sex,
                birth,
                splits[p],
                date,
                prior.study_id if prior else None,
                prior.image_id if prior else None,
                render,
                report,
                int(rng.integers(2**62)),
            )
            studies.append(prior)
            date += dt.timedelta(days=int(rng.integers(20, 500)))
    return [studies[int(i)] for i in rng.permutation(len(studies))]
