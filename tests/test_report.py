"""The self-contained HTML report of a run directory, checked as text and in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ricl.data import load_dataset
from ricl.data.phantom import write_phantom_release
from ricl.evaluation.metrics import score
from ricl.types import Prediction, boxes_from_lists
from ricl_apps.evaluation.report import iou_bucket, write_report

SCRIPT = "<script>alert(1)</script>"
N_CARD = re.compile(r'class="instance"')
ARTICLE = re.compile(r"<article\b[^>]*>")


def _row(inst, status, boxes=(), raw=None, error=None, exemplars=(), **extra):
    return {
        "instance_id": inst.instance_id,
        "image_id": inst.image_id,
        "study_id": inst.study_id,
        "patient_id": inst.patient_id,
        "phrase": inst.phrase,
        "label_group": inst.label_group,
        "boxes": [list(b) for b in boxes],
        "status": status,
        "raw": raw,
        "error": error,
        "n_repaired": 0,
        "n_dropped": 0,
        "model": "knn",
        "prompt_hash": "0123456789abcdef",
        "timings": {"retrieve": 1.2, "prompt": 0.5, "generate": 30.1, "parse": 0.1, "total": 32},
        "exemplars": list(exemplars),
        **extra,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A phantom release and a hand-written run directory covering every card state."""
    tmp = tmp_path_factory.mktemp("report")
    write_phantom_release(tmp / "rel", 30, 0, size=64, workers=1)
    ds = load_dataset("phantom", root=tmp / "rel")
    insts, train = ds.select("test"), ds.select("train")
    assert len(insts) >= 9 and all(i.boxes for i in insts[:3])
    exemplars = [
        {
            "exemplar_id": k,
            "study_id": t.study_id,
            "image_id": t.image_id,
            "image_file": str(ds.image_file(t)),
            "score": 0.9 - 0.1 * k,
            "phrase": t.phrase,
            "boxes": [b.to_list() for b in t.boxes],
            "similarity": 0.5,
        }
        for k, t in enumerate(train[:2])
    ]
    absent = dict(exemplars[0], exemplar_id=99, image_file=str(tmp / "gone.png"))
    gold0 = [b.to_list() for b in insts[0].boxes]
    b1 = insts[1].boxes[0]
    shifted = [b1.x_min, b1.y_min, b1.x_min + 0.4 * b1.width, b1.y_max]  # IoU 0.4
    far = [0.0, 0.0, 0.01, 0.01] if insts[2].boxes[0].x_min > 0.05 else [0.98, 0.98, 1.0, 1.0]
    rows = [
        _row(insts[0], "ok", gold0, raw="[[...]]", exemplars=exemplars),
        _row(insts[1], "ok", [shifted], raw="shifted"),
        _row(insts[2], "ok", [far], raw="far away"),
        _row(insts[3], "empty", raw="nothing there"),
        _row(insts[4], "parse_error", raw=f"I think {SCRIPT} & <b>bold</b>"),
        _row(insts[5], "error", error="ConnectionError: server <down>"),
        _row(insts[6], "error", error="first attempt failed"),
        _row(insts[6], "ok", [b.to_list() for b in insts[6].boxes], raw="retry ok"),
        # insts[7]: no row at all -> "missing"
        _row(insts[8], "ok", [[0.1, 0.1, 0.5, 0.5]], exemplars=[absent], union_iou=0.42),
        dict(_row(insts[0], "ok"), instance_id="not/in/split"),
    ]
    run_dir = tmp / "run"
    run_dir.mkdir()
    with open(run_dir / "predictions.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
        fh.write('{"instance_id": "torn')  # a crash mid-write leaves a torn last line
    last = {r["instance_id"]: r for r in rows}
    preds = {
        k: Prediction(r["image_id"], r["phrase"], boxes_from_lists(r["boxes"]), status=r["status"])
        for k, r in last.items()
    }
    metrics = score(insts, preds)
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    run_info = {
        "run_id": "run-<test>",
        "dataset": "phantom",
        "split": "test",
        "n_instances": len(insts),
        "n_done": len(insts) - 1,
        "n_errors": 1,
        "complete": False,
        "agent": {"backend": "knn", "k": 2, "strategy": "k-shot"},
    }
    (run_dir / "run.json").write_text(json.dumps(run_info), encoding="utf-8")
    path = write_report(run_dir, insts, ds.images_root)
    return {
        "path": path,
        "html": path.read_text("utf-8"),
        "insts": insts,
        "ds": ds,
        "metrics": metrics,
        "run_dir": run_dir,
    }


def _cards(html: str) -> list[dict[str, str]]:
    out = []
    for tag in ARTICLE.findall(html):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        attrs["hidden"] = "hidden" if re.search(r"\shidden\b", tag) else ""
        out.append(attrs)
    return out


# ------------------------------------------------------------------------- the HTML file
def test_report_is_self_contained(run):
    html = run["html"]
    assert run["path"] == run["run_dir"] / "report.html"
    assert not re.search(r"https?://", html, re.IGNORECASE)
    assert 'src="//' not in html and "@import" not in html and "<link" not in html
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    # the query images (9) and the two real exemplar images, each card drawing its own copy
    assert len(srcs) == len(run["insts"]) + 2
    assert not [p for p in run["run_dir"].iterdir() if p.name.startswith(".report-")]


def test_one_card_per_instance_with_status_and_bucket(run):
    html, insts = run["html"], run["insts"]
    cards = _cards(html)
    assert len(N_CARD.findall(html)) == len(cards) == len(insts)
    status = [c["data-status"] for c in cards]
    assert status[:9] == [
        "ok",
        "ok",
        "ok",
        "empty",
        "parse_error",
        "error",
        "ok",
        "missing",
        "ok",
    ]
    buckets = [c["data-iou-bucket"] for c in cards]
    assert buckets[0] == "high" and buckets[2] == "zero" and buckets[3] == "zero"
    assert buckets[1] == "mid" and buckets[6] == "high"
    assert buckets[8] == "mid"  # from the row's own union_iou (0.42); its boxes would say less
    assert [c["data-group"] for c in cards] == [i.label_group or "unknown" for i in insts]
    assert "0.420" in html  # union_iou from the row wins over a recomputation
    assert "first attempt failed" not in html  # the last row of an instance wins
    assert "1 unreadable line" in html and "1 prediction row(s) name an instance_id" in html


def test_iou_buckets():
    assert [iou_bucket(v) for v in (0.0, 1e-6, 0.2999999999, 0.3, 0.49, 0.5, 1.0)] == [
        "zero",
        "low",
        "mid",
        "mid",
        "mid",
        "high",
        "high",
    ]


def test_model_text_is_escaped(run):
    html = run["html"]
    assert SCRIPT not in html and "<b>bold</b>" not in html
    assert "I think &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "ConnectionError: server &lt;down&gt;" in html
    assert "run-&lt;test&gt;" in html
    assert html.count("<script") == 1  # only the filter script of the page itself


def test_filters_metrics_and_header(run):
    html, metrics = run["html"], run["metrics"]
    for sel in ('id="f-group"', 'id="f-status"', 'id="f-iou"', 'id="counter"'):
        assert sel in html
    for status in ("ok", "empty", "parse_error", "error", "missing"):
        assert f'<option value="{status}">' in html
    for bucket in ("zero", "low", "mid", "high"):
        assert f'<option value="{bucket}">' in html
    assert "(0, 0.3)" in html and "[0.3, 0.5)" in html and "&gt;= 0.5" in html
    assert "union IoU (micro)" in html and f"{metrics['union_iou_micro']:.3f}" in html
    assert "RoDeO total" in html and "missing predictions" in html
    for group in metrics["per_label_group"]:
        assert f"<td>{group}</td>" in html
    assert "incomplete" in html and "phantom" in html and "knn" in html
    assert "no image" in html  # the exemplar whose file is gone is a placeholder
    assert "legend" in html and "#009E73" in html


def test_without_metrics_and_truncated(run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run["run_dir"], run_dir)
    (run_dir / "metrics.json").unlink()
    out = write_report(
        run_dir,
        run["insts"],
        run["ds"].images_root,
        out=tmp_path / "o" / "r.html",
        max_instances=3,
        thumb_side=64,
    )
    html = out.read_text("utf-8")
    assert len(_cards(html)) == 3
    assert f"first 3 of {len(run['insts'])} instances" in html
    assert "No metrics.json" in html and 'class="metrics"' not in html
    with pytest.raises(FileNotFoundError, match="run.json"):
        write_report(tmp_path, run["insts"], run["ds"].images_root)


# ------------------------------------------------------------------------- real Chromium
CONSOLE_LINE = re.compile(r':CONSOLE(?::\d+)?\] "(?P<msg>.*)", source: (?P<src>.*) \(\d+\)\s*$')


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium; installed with apt when missing (CI runs as root)."""
    if os.environ.get("RICL_SKIP_BROWSER") == "1":
        pytest.skip("RICL_SKIP_BROWSER=1")
    exe = shutil.which("chromium")
    if exe:
        return exe
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (
        ["apt-get", "install", "-y", "chromium"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "chromium"],
    ):
        if cmd[1] == "update" and shutil.which("chromium"):
            break
        try:
            p = subprocess.run(
                cmd, check=False, capture_output=True, text=True, env=env, timeout=900
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.fail(f"{' '.join(cmd)} failed: {e}\n" + "\n".join(log))
        log.append(f"$ {' '.join(cmd)} -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    exe = shutil.which("chromium")
    if not exe:
        pytest.fail("could not install chromium with apt-get:\n" + "\n".join(log))
    return exe


def _chromium(exe: str, url: str, tmp: Path, *args: str) -> tuple[str, str]:
    cmd = [
        exe,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=3000",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        *args,
        url,
    ]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, f"chromium exited {p.returncode}:\n{p.stderr[-4000:]}"
    return p.stdout, p.stderr


def _console(stderr: str) -> list[str]:
    """Messages the page sent to the console (Chromium prints every level as INFO:CONSOLE)."""
    out = [m["msg"] for line in stderr.splitlines() if (m := CONSOLE_LINE.search(line))]
    out += [line for line in stderr.splitlines() if "Uncaught" in line and ":CONSOLE" not in line]
    return out


@pytest.mark.slow
def test_console_error_detection_is_not_blind(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><p id="x">x</p><script>console.error("deliberate");'
        "notDefinedAnywhere();</script>",
        encoding="utf-8",
    )
    good = tmp_path / "good.html"
    good.write_text(
        '<!doctype html><p id="x">x</p><script>'
        'document.getElementById("x").textContent = "js ran";</script>'
    )
    dom, stderr = _chromium(chromium, bad.as_uri(), tmp_path, "--dump-dom")
    msgs = _console(stderr)
    assert "deliberate" in msgs, stderr[-3000:]
    assert any(m.startswith("Uncaught ReferenceError: notDefinedAnywhere") for m in msgs), msgs
    dom, stderr = _chromium(chromium, good.as_uri(), tmp_path, "--dump-dom")
    assert _console(stderr) == [] and "js ran" in dom


@pytest.mark.slow
def test_report_in_chromium(chromium, run, tmp_path):
    from PIL import Image

    n = len(run["insts"])
    url = run["path"].as_uri()
    assert f"showing {n} of" not in run["html"] and "filters need JavaScript" in run["html"]
    dom, stderr = _chromium(chromium, url, tmp_path, "--dump-dom")
    assert _console(stderr) == [], stderr[-3000:]
    cards = _cards(dom)
    assert len(N_CARD.findall(dom)) == len(cards) == n
    assert f"showing {n} of {n}" in dom and not any(c["hidden"] for c in cards)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and SCRIPT not in dom

    # a filter given in the URL hash is applied on load
    dom, stderr = _chromium(chromium, url + "#status=error", tmp_path, "--dump-dom")
    assert _console(stderr) == [], stderr[-3000:]
    shown = [c for c in _cards(dom) if not c["hidden"]]
    assert f"showing 1 of {n}" in dom and [c["data-status"] for c in shown] == ["error"]
    dom, _ = _chromium(chromium, url + "#status=ok&iou=high", tmp_path, "--dump-dom")
    shown = [c for c in _cards(dom) if not c["hidden"]]
    assert f"showing {len(shown)} of {n}" in dom and len(shown) == 2
    assert all(c["data-iou-bucket"] == "high" and c["data-status"] == "ok" for c in shown)

    shot = tmp_path / "shot.png"
    _, stderr = _chromium(
        chromium,
        url,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        "--hide-scrollbars",
    )
    assert _console(stderr) == [], stderr[-3000:]
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1280, 2000)
        rgb = im.convert("RGB")
    import numpy as np

    px = np.asarray(rgb).reshape(-1, 3).astype(int)
    assert px.std() > 20 and len(np.unique(px, axis=0)) > 50
    for colour in ((0x00, 0x9E, 0x73), (0xCC, 0x79, 0xA7)):  # gold and prediction strokes
        near = np.abs(px - np.array(colour)).sum(axis=1) < 40
        assert near.sum() > 30, colour


def test_per_instance_times_are_written_in_their_unit(run):
    # timings are milliseconds: 32 ms must not read "32 s" (a site-X run once showed
    # "6664.521 s" for a 6.7 s query)
    assert "total 32.0 ms (retrieve 1.20 ms, prompt 0.50 ms, generate 30.1 ms" in run["html"]
    assert not re.search(r"\b32(\.0+)? s\b", run["html"])


@pytest.mark.parametrize(
    "ms, text", [(0.42, "0.42 ms"), (37.14, "37.1 ms"), (999.94, "999.9 ms"), (6664.521, "6.66 s")]
)
def test_duration_text(ms, text):
    from ricl_apps.evaluation.report import duration_text

    assert duration_text(ms) == text
