"""``bench/index_scale.py`` (behind scale_out.md's index tables) at a tiny size: every child
process runs, every column is filled, recall is a share, the ``--sweep`` table is written,
flat is exact at 4 * d bytes per vector, and the shard merge equals the unsharded build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # 9 fresh interpreters: 6-16 s on a busy 2-core runner

ROOT = Path(__file__).resolve().parents[1]


def _load_bench():
    spec = importlib.util.spec_from_file_location("index_scale", ROOT / "bench" / "index_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_index_scale_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # children: no OpenMP spinning on 2 cores
    bench = _load_bench()
    out = tmp_path / "table.md"
    rc = bench.main(
        ["--n", "2000", "--dim", "32", "--types", "flat,ivfpq:nlist=16,hnsw-sq:M=8",
         "--shards", "2", "--queries", "30", "--eval-queries", "50", "--budget-s", "0.01",
         "--sweep", "4", "--tmp", str(tmp_path), "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    text = out.read_text()
    assert text in capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 2k |")]
    assert [r[2].strip() for r in rows] == ["flat", "ivfpq", "hnsw-sq"]
    for cells in rows:
        assert len(cells) == 12 and all(c.strip() for c in cells)
        assert 0.0 <= float(cells[-1]) <= 1.0
        assert float(cells[4]) >= 0 and int(cells[6]) > 0  # build s, bytes / vector
    flat = rows[0]
    assert float(flat[-1]) == 1.0
    assert int(flat[6]) == 4 * 32  # IndexFlatIP: the float32 vectors (+ a header)
    assert "nlist=16" in rows[1][3] and "M=8" in rows[2][3]
    assert "| ivfpq | nprobe=4 |" in text and "| hnsw-sq | ef_search=4 |" in text
    assert "byte-identical to the unsharded one: True" in text
    assert "| `merge_shards`" in text
