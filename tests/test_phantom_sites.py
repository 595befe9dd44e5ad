"""Tests of the phantom generator's sites (ricl.data.phantom.sites): the default site is the
historic generator byte for byte, every named site writes a readable release, and each
style parameter shows in the pixels, the boxes and the sentences as configured."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ricl.data import load_dataset
from ricl.data.phantom import (
    EXTERNAL_SITES,
    INTERNAL_SITES,
    LOCATIONS,
    SITE_SIDECAR,
    SITES,
    WORDINGS,
    PhantomSummary,
    SiteStyle,
    SiteStyleError,
    annotate_boxes,
    get_site,
    plan_release,
    render_study,
    write_phantom_release,
)
from ricl.data.phantom.wording import has_location_word
from ricl.errors import UnknownNameError
from ricl_apps.cli import app

N, SEED, SIZE = 40, 21, 128


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PhantomSummary]:
    root = tmp_path_factory.mktemp("sites")
    return {
        name: write_phantom_release(root / name, N, seed=SEED, size=SIZE, site=name)
        for name in SITES
    }


@pytest.fixture(scope="module")
def big_plans() -> dict[str, list]:
    return {name: plan_release(400, seed=5, sizes=64, site=name) for name in SITES}


def _records(summary: PhantomSummary) -> list[dict]:
    return json.loads(summary.json_path.read_text(encoding="utf-8"))


def _positives(plan: list) -> list:
    return [f for s in plan for f in s.findings if f.abnormal]


def _ftype(study, finding) -> str:
    return study.render.findings[finding.render_index].ftype


# ------------------------------------------------------------------ the default site
def test_default_site_is_the_historic_generator(tmp_path: Path) -> None:
    a = write_phantom_release(tmp_path / "omitted", 16, seed=7, size=96)
    b = write_phantom_release(tmp_path / "named", 16, seed=7, size=96, site="default")
    c = write_phantom_release(tmp_path / "style", 16, seed=7, size=96, site=SiteStyle())
    for other in (b, c):
        for name in ("json_path", "csv_path", "site_path"):
            assert getattr(other, name).read_bytes() == getattr(a, name).read_bytes()
        images = sorted(p.name for p in a.images_dir.iterdir())
        assert images == sorted(p.name for p in other.images_dir.iterdir())
        for img in images:
            assert (other.images_dir / img).read_bytes() == (a.images_dir / img).read_bytes()
    # pinned to the generator before sites existed: ids, sentences, labels, locations,
    # progression and box counts (box coordinates left out: they come from float rendering)
    records = _records(a)
    for rec in records:
        for f in rec["findings"]:
            f.pop("boxes", None)
            f.pop("extra_boxes", None)
    text = json.dumps(records, ensure_ascii=False, sort_keys=True).encode("utf-8")
    assert (
        hashlib.sha256(text).hexdigest()
        == "89ac892ee26a759b0d899abbac315853eea7ce4163b6cf5785ad4c41c36dbe46"
    )
    side = json.loads(a.site_path.read_text(encoding="utf-8"))
    assert side["site"] == SITES["default"].to_dict() and side["findings"] == {}
    assert a.site == "default" and SITES["default"].is_default


# ------------------------------------------------------------------ every site is a release
@pytest.mark.parametrize("name", list(SITES))
def test_every_site_writes_a_readable_release(
    name: str, releases: dict[str, PhantomSummary]
) -> None:
    summary = releases[name]
    assert summary.site == name and summary.site_path == summary.out_dir / SITE_SIDECAR
    for dataset in ("padchest-gr", "phantom"):
        ds = load_dataset(dataset, summary.out_dir)
        assert not ds.skipped and len(ds.studies) == N and ds.instances
    side = json.loads(summary.site_path.read_text(encoding="utf-8"))
    assert side["site"] == SITES[name].to_dict() and side["seed"] == SEED
    assert get_site(summary.site_path) == SITES[name]  # the sidecar reads back as the style
    for rec in _records(summary):
        for f in rec["findings"]:
            assert f["sentence_en"].endswith(".") and f["sentence_es"].endswith(".")
            if f["abnormal"]:
                assert f["locations"] and all(loc in LOCATIONS for loc in f["locations"])


def test_sidecar_marks_match_the_plan(releases: dict[str, PhantomSummary]) -> None:
    summary = releases["A"]
    marks = json.loads(summary.site_path.read_text(encoding="utf-8"))["findings"]
    plan = {s.image_id: s for s in plan_release(N, SEED, SIZE, site="A")}
    n_faint = n_unlocated = 0
    for rec in _records(summary):
        s = plan[rec["ImageID"]]
        m = marks.get(rec["ImageID"], {"faint": [], "no_location": []})
        for i, f in enumerate(s.findings):
            assert f.sentence_en == rec["findings"][i]["sentence_en"]
            if not f.abnormal:
                continue
            faint = s.render.findings[f.render_index].contrast < 1.0
            assert (i in m["faint"]) == faint and (i in m["no_location"]) == (not f.located)
            n_faint += faint
            n_unlocated += not f.located
    assert n_faint > 3 and n_unlocated > 3


# ------------------------------------------------------------------ sentences
@pytest.mark.parametrize("name", list(SITES))
def test_location_free_sentences_share_and_words(name: str, big_plans: dict[str, list]) -> None:
    style, plan = SITES[name], big_plans[name]
    rows = [(f, _ftype(s, f)) for s in plan for f in s.findings if f.abnormal]
    sited = [f for f, t in rows if t != "cardiomegaly"]
    share = sum(not f.located for f in sited) / len(sited)
    assert abs(share - style.no_location_fraction) < 0.07, share
    for f, ftype in rows:
        assert f.locations  # the annotation keeps the true location either way
        en, es = has_location_word(f.sentence_en), has_location_word(f.sentence_es)
        assert en == es, (f.sentence_en, f.sentence_es)  # English and Spanish agree
        assert en == (f.located and ftype != "cardiomegaly"), (f.sentence_en, f.locations)


def test_site_a_release_has_location_free_sentences(releases: dict[str, PhantomSummary]) -> None:
    positives = [f for r in _records(releases["A"]) for f in r["findings"] if f["abnormal"]]
    sited = [f for f in positives if f["labels"][0] != "cardiomegaly"]
    free = [f for f in sited if not has_location_word(f["sentence_en"])]
    assert abs(len(free) / len(sited) - SITES["A"].no_location_fraction) < 0.2
    assert all(f["locations"] and f["locations"] != ["cardiac"] for f in free)
    assert all(not has_location_word(f["sentence_es"]) for f in free)


def test_wordings(big_plans: dict[str, list]) -> None:
    assert {SITES[n].wording for n in SITES} == set(WORDINGS)
    patterns = {  # a positive sentence of each wording (English, Spanish)
        "terse": (r"^[A-Z][^.:]*(: [^.]+)?[.,]", r"^[A-ZÁÉÍÓÚ][^.]*[.,]"),
        "verbose": (r"^(There is|Findings are|On this frontal)", r"^(Se observa|Hallazgos|En la)"),
        "structured": (r"^Finding: [a-z ]+[.,]( Location: [a-z ]+[.,])?", r"^Hallazgo: "),
    }
    for name in ("B", "C", "X"):
        en_re, es_re = patterns[SITES[name].wording]
        for f in _positives(big_plans[name]):
            assert re.match(en_re, f.sentence_en), (name, f.sentence_en)
            assert re.match(es_re, f.sentence_es), (name, f.sentence_es)
    standard = {f.sentence_en for f in _positives(big_plans["default"])}
    assert {f.sentence_en for f in _positives(big_plans["A"]) if f.located} & standard


# ------------------------------------------------------------------ pixels
def test_faint_findings_have_lower_contrast() -> None:
    style = SITES["A"]
    contrast: dict[bool, list[float]] = {True: [], False: []}
    for s in plan_release(40, seed=2, sizes=128, site="A"):
        for f in s.render.findings:
            if f.ftype == "cardiomegaly":
                continue
            spec = replace(s.render, findings=(f,))
            out, bare = render_study(spec), render_study(spec, with_findings=False)
            diff = np.abs(out.pixels.astype(np.float64) - bare.pixels.astype(np.float64))
            span = float(np.percentile(bare.pixels, 99) - np.percentile(bare.pixels, 1))
            for x0, y0, x1, y1 in out.boxes[0]:
                contrast[f.contrast < 1.0].append(float(diff[y0:y1, x0:x1].mean()) / span)
    faint, bright = np.mean(contrast[True]), np.mean(contrast[False])
    assert len(contrast[True]) >= 10 and len(contrast[False]) >= 10
    assert faint < 0.5 * bright  # about faint_level times the normal contrast
    assert faint < 2.0 * style.faint_level * bright
    assert faint > 0.0  # still there


def test_faint_share(big_plans: dict[str, list]) -> None:
    for name, plan in big_plans.items():
        fs = [f for s in plan for f in s.render.findings if f.ftype != "cardiomegaly"]
        share = sum(f.contrast < 1.0 for f in fs) / len(fs)
        assert abs(share - SITES[name].faint_fraction) < 0.07, (name, share)
        assert all(f.contrast in (1.0, SITES[name].faint_level) for f in fs)


def test_acquisition_magnification_shift_contrast_inversion(big_plans: dict[str, list]) -> None:
    s = next(s for s in plan_release(30, seed=4, sizes=192) if s.render.findings)
    base = replace(s.render, inverted=False, findings=s.render.findings[:1])
    w, h = base.width, base.height

    def centre(spec) -> np.ndarray:
        x0, y0, x1, y1 = render_study(spec).boxes[0][0]
        return np.array([(x0 + x1) / 2 - w / 2, (y0 + y1) / 2 - h / 2])

    c1 = centre(base)
    c_mag = centre(replace(base, magnification=0.8))
    assert np.allclose(c_mag, 0.8 * c1, atol=2.0)  # the body scales about the image centre
    c_shift = centre(replace(base, shift=(0.05, -0.04)))
    assert np.allclose(c_shift - c1, [0.05 * w, -0.04 * h], atol=1.5)
    plain = render_study(base).pixels.astype(np.float64).mean()
    assert render_study(replace(base, contrast=1.45)).pixels.astype(np.float64).mean() < plain
    for name, plan in big_plans.items():
        style = SITES[name]
        assert all(
            (p.render.magnification, p.render.shift, p.render.contrast)
            == (style.magnification, style.centre_shift, style.contrast)
            for p in plan
        )
        share = sum(p.render.inverted for p in plan) / len(plan)
        assert abs(share - style.invert_fraction) < 0.05, (name, share)


# ------------------------------------------------------------------ boxes
@pytest.mark.parametrize("name", list(SITES))
def test_box_margins_and_bilateral_boxes_as_configured(
    name: str, releases: dict[str, PhantomSummary]
) -> None:
    style = SITES[name]
    records = {r["ImageID"]: r for r in _records(releases[name])}
    margins, n_bilateral = [], 0
    for s in plan_release(N, SEED, SIZE, site=name):
        tight, w, h = render_study(s.render).boxes, s.render.width, s.render.height
        rec = records[s.image_id]
        for i, f in enumerate(s.findings):
            if not f.abnormal or not f.grounded:
                continue
            got = [
                (round(b[0] * w), round(b[1] * h), round(b[2] * w), round(b[3] * h))
                for b in rec["findings"][i]["boxes"]
            ]
            drawn = list(tight[f.render_index])
            if "bilateral" in f.locations and len(drawn) == 2:
                n_bilateral += 1
                if style.bilateral_single_box:
                    lo_xy = [min(v) for v in zip(*drawn, strict=True)][:2]
                    drawn = [(*lo_xy, *[max(v) for v in zip(*drawn, strict=True)][2:])]
            assert len(got) == len(drawn)
            for g, d in zip(got, drawn, strict=True):
                edges = ((d[0] - g[0], w, g[0] > 0), (d[1] - g[1], h, g[1] > 0))
                edges += ((g[2] - d[2], w, g[2] < w), (g[3] - d[3], h, g[3] < h))
                for px, size, free in edges:
                    lo = max(0.0, style.box_margin - style.box_margin_jitter) * size - 0.5
                    hi = (style.box_margin + style.box_margin_jitter) * size + 0.5
                    assert px >= 0 and (px <= hi if free else True)
                    if free:
                        assert px >= lo
                        margins.append(px / size)
    assert margins and n_bilateral > 0
    assert abs(np.mean(margins) - style.box_margin) < 0.004 + 0.5 / SIZE


def test_margins_make_boxes_larger_in_x_than_in_a(releases: dict[str, PhantomSummary]) -> None:
    def areas(name: str) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for r in _records(releases[name]):
            for f in r["findings"]:
                if f["abnormal"]:
                    for b in f["boxes"]:
                        out.setdefault(f["labels"][0], []).append((b[2] - b[0]) * (b[3] - b[1]))
        return {k: float(np.mean(v)) for k, v in out.items()}

    a, x = areas("A"), areas("X")
    small = [
        t for t in ("nodule", "calcified granuloma", "mass", "atelectasis") if t in a and t in x
    ]
    assert small
    assert all(x[t] > a[t] for t in small), (a, x)


def test_annotate_boxes() -> None:
    tight = ((10, 20, 30, 40), (60, 22, 80, 44))
    style = SiteStyle(name="t", box_margin=0.05, bilateral_single_box=True)
    assert annotate_boxes(tight, SITES["default"], 100, 100, None, bilateral=True) == tight
    assert annotate_boxes(tight, style, 100, 200, None, bilateral=False) == (
        (5, 10, 35, 50),
        (55, 12, 85, 54),
    )
    assert annotate_boxes(tight, style, 100, 200, None, bilateral=True) == ((5, 10, 85, 54),)
    assert annotate_boxes(((0, 0, 98, 99),), style, 100, 100, None, False) == ((0, 0, 100, 100),)
    with pytest.raises(ValueError, match="generator"):
        annotate_boxes(tight, replace(style, box_margin_jitter=0.01), 100, 100, None, False)


# ------------------------------------------------------------------ the sites themselves
def test_external_site_lies_outside_the_internal_ones() -> None:
    assert set(INTERNAL_SITES) == {"A", "B", "C"} and EXTERNAL_SITES == ("X",)
    internal, x = [SITES[n] for n in INTERNAL_SITES], SITES["X"]

    def outside(get) -> bool:
        values = [get(s) for s in internal]
        return get(x) < min(values) or get(x) > max(values)

    for get in (
        lambda s: s.box_margin,
        lambda s: s.box_margin_jitter,
        lambda s: s.magnification,
        lambda s: s.centre_shift[0],
        lambda s: s.centre_shift[1],
        lambda s: s.contrast,
        lambda s: s.invert_fraction,
    ):
        assert outside(get)
    assert x.wording not in {s.wording for s in internal}
    for s in [*internal, x]:  # every training and test site has faint, location-free findings
        assert 0.4 <= s.faint_fraction <= 0.6 and 0.4 <= s.no_location_fraction <= 0.6
        assert s.faint_level < 0.5
    assert len({s.stream_key for s in SITES.values()}) == len(SITES)


def test_site_style_validation_and_json() -> None:
    for name, style in SITES.items():
        data = json.loads(json.dumps(style.to_dict()))
        assert SiteStyle.from_dict(data) == style and style.name == name
    assert SiteStyle.from_dict({"name": "q", "box_margin": 0.03}).faint_fraction == 0.0
    bad = [
        {"faint_fraction": 1.5},
        {"faint_level": 0.0},
        {"box_margin": -0.01},
        {"magnification": 3},
        {"centre_shift": (0.1,)},
        {"centre_shift": (0.0, 0.5)},
        {"contrast": float("nan")},
        {"invert_fraction": "0.1"},
        {"bilateral_single_box": 1},
        {"wording": "poetic"},
        {"name": "bad name"},
    ]
    for kw in bad:
        with pytest.raises(SiteStyleError, match=next(iter(kw)).split("_")[0]):
            SiteStyle(**kw)
    with pytest.raises(SiteStyleError, match="unknown parameter"):
        SiteStyle.from_dict({"margin": 0.1})
    with pytest.raises(AttributeError):
        SITES["A"].box_margin = 0.5  # type: ignore[misc]


def test_unknown_site_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="known sites: default, A, B, C, X"):
        get_site("Z")
    with pytest.raises(UnknownNameError):
        write_phantom_release(tmp_path / "z", 3, seed=0, size=64, site="hospital")
    assert not (tmp_path / "z").exists()
    assert get_site("x") is SITES["X"] and get_site(SITES["B"]) is SITES["B"]
    r = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path / "c"), "--site", "Z"])
    assert isinstance(r.exception, UnknownNameError) and not (tmp_path / "c").exists()


def test_cli_site_option(tmp_path: Path) -> None:
    args = ["phantom", "--out", str(tmp_path / "b"), "--studies", "6", "--size", "64"]
    r = CliRunner().invoke(app, [*args, "--site", "B", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "wrote 6 studies" in r.output and "site B" in r.output
    side = json.loads((tmp_path / "b" / SITE_SIDECAR).read_text(encoding="utf-8"))
    assert side["site"]["name"] == "B"
    custom = tmp_path / "site.json"
    custom.write_text(json.dumps(replace(SITES["X"], name="X2", box_margin=0.06).to_dict()))
    args = ["phantom", "--out", str(tmp_path / "x2"), "--studies", "4", "--size", "64"]
    r = CliRunner().invoke(app, [*args, "--site", str(custom), "--workers", "1"])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "x2" / SITE_SIDECAR).read_text(encoding="utf-8"))
    assert side["site"]["box_margin"] == 0.06


# ------------------------------------------------------------------ merging sites
def test_ids_do_not_collide_between_sites_and_seeds(releases: dict[str, PhantomSummary]) -> None:
    seen: dict[str, tuple[str, int]] = {}
    for name in SITES:
        for seed in (0, 1, SEED):
            for s in plan_release(60, seed=seed, sizes=64, site=name):
                for key in {s.patient_id, s.study_id, s.image_id}:
                    assert seen.setdefault(key, (name, seed)) == (name, seed), key
    pooled = [r["ImageID"] for summary in releases.values() for r in _records(summary)]
    assert len(pooled) == len(set(pooled)) == N * len(SITES)
