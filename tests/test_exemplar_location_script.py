"""``eval/retrieval/exemplar_location.py`` (the retrieval-side check behind vlm_sites.md's
pool choice): arm parsing, and the per-instance numbers on hand-made exemplars."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ricl.types import Box, Instance
from tests.agent_fixtures import exemplar

ROOT = Path(__file__).resolve().parents[1]


def _load():
    path = ROOT / "eval" / "retrieval" / "exemplar_location.py"
    spec = importlib.util.spec_from_file_location("exemplar_location", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _instance(phrase: str, box: Box, labels: tuple[str, ...]) -> Instance:
    return Instance("S0/0", "phantom", "S0", "S0", "P0", "test", "S0.png", phrase, (box,),
                    labels=labels)  # fmt: skip


def test_parse_arm_forms() -> None:
    m = _load()
    assert m.parse_arm("fused") == ("fused", "fused", {})
    assert m.parse_arm("oracle=location") == ("oracle", "location", {})
    assert m.parse_arm('wide=fused:{"pool": 1024, "image": 2}') == (
        "wide",
        "fused",
        {"pool": 1024, "image": 2},
    )
    with pytest.raises(SystemExit, match="not JSON"):
        m.parse_arm("wide=fused:{pool: 1}")
    with pytest.raises(SystemExit, match="JSON object"):
        m.parse_arm("wide=fused:[1]")


def test_instance_scores_use_the_demonstrated_finding() -> None:
    m = _load()
    # exemplar finding j: box (0.1 + 0.1 j, 0.2, 0.3 + 0.1 j, 0.6); the prompt demonstrates
    # the finding whose phrase matches the query's ("nodule ..." -> finding 1)
    ex = exemplar(1, ["effusion left base", "nodule right upper"])
    inst = _instance("nodule right upper lobe", Box(0.2, 0.2, 0.4, 0.6), ("nodule",))
    mean, best, same = m.instance_scores([ex], inst)
    assert (mean, best, same) == (pytest.approx(1.0), pytest.approx(1.0), 1.0)
    # a second exemplar whose only finding is shifted by 0.1: IoU (0.1 * 0.4) / (0.3 * 0.4)
    other = exemplar(2, ["effusion left base"])
    mean, best, same = m.instance_scores([ex, other], inst)
    assert mean == pytest.approx((1.0 + 1 / 3) / 2)
    assert best == pytest.approx(1.0)
    assert same == 0.5
    assert m.instance_scores([], inst) == (0.0, 0.0, 0.0)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    m = _load()
    rc = m._cli(["--dataset", "nope", "--root", str(tmp_path), "--index", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown dataset 'nope'") and "\n" not in err
