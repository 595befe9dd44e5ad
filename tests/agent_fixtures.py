"""Shared fixtures of the prompt/agent tests: a tiny phantom release and its index
(built with the deterministic fake encoder, so no torch model is needed)."""

from __future__ import annotations

from pathlib import Path

from ricl.retrieval.build import build_index
from ricl.retrieval.exemplars import Exemplar, ExemplarFinding
from ricl.types import Box
from tests.fakes import FakeEncoder


def make_phantom_index(tmp: Path, n: int = 40) -> tuple[Path, object]:
    """(index dir, dataset) of an ``n``-study phantom release at 64 px."""
    from ricl.data import load_dataset
    from ricl.data.phantom import write_phantom_release

    write_phantom_release(tmp / "release", n, 0, size=64, workers=1)
    ds = load_dataset("phantom", root=tmp / "release")
    build_index(FakeEncoder(), ds, "train", tmp / "index", progress=False)
    return tmp / "index", ds


def exemplar(i: int, phrases: list[str], size: tuple[int, int] = (200, 100)) -> Exemplar:
    """A hand-made exemplar: finding j has one box shifted by j."""
    findings = tuple(
        ExemplarFinding(
            index=j,
            phrase=p,
            boxes=(Box(0.1 + 0.1 * j, 0.2, 0.3 + 0.1 * j, 0.6),),
            labels=(p.split()[0],),
        )
        for j, p in enumerate(phrases)
    )
    return Exemplar(i, f"S{i}", f"img{i}.png", f"P{i}", "train", f"img{i}.png", findings, size,
                    score=1.0 - 0.1 * i)  # fmt: skip
