"""Sharded index builds: ``ricl index build --shard I/N`` (or torchrun's RANK/WORLD_SIZE)
then ``ricl index merge`` gives the index a one-process build gives; broken shard sets are
refused with one line naming the directory and the fix."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from ricl.data.phantom import write_phantom_release
from ricl.data.registry import load_dataset
from ricl.retrieval.build import build_index
from ricl.retrieval.errors import IndexFormatError
from ricl.retrieval.manifest import IndexConfig
from ricl.retrieval.shards import (
    ShardError,
    build_shard,
    merge_shards,
    parse_shard,
    shard_from_env,
    shard_range,
)
from ricl.retrieval.store import load_index
from ricl_apps.index_cli import index_app
from tests.fakes import FakeEncoder, make_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A phantom release and a tiny random LoFi encoder directory (as test_index_cli)."""
    import torch

    from ricl.encoders.lofi.config import tiny_config
    from ricl.encoders.lofi.encoder import save_lofi_model
    from ricl.encoders.lofi.model import LoFiModel
    from ricl.encoders.tokenizer import build_word_tokenizer

    tmp = tmp_path_factory.mktemp("shards")
    release = tmp / "release"
    write_phantom_release(release, 40, seed=5, size=96)
    ds = load_dataset("phantom", release)
    tok = build_word_tokenizer([f.sentence_en for s in ds.studies for f in s.findings])
    torch.manual_seed(0)
    model = LoFiModel.build(tiny_config(64), tok, tok).eval()
    return {"tmp": tmp, "release": release, "ds": ds,
            "enc": save_lofi_model(model, tok, tok, tmp / "lofi")}  # fmt: skip


def _ok(args: list[str], env: dict[str, str] | None = None) -> str:
    r = runner.invoke(index_app, args, env=env)
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def test_three_uneven_shards_merge_to_the_one_process_index(phantom):
    tmp = phantom["tmp"]
    common = ["--encoder", str(phantom["enc"]), "--dataset", "phantom", "--root",
              str(phantom["release"]), "--split", "train", "--batch-size", "3"]  # fmt: skip
    whole, shards, merged = tmp / "whole", tmp / "shards", tmp / "merged"
    _ok(["build", *common, "--out", str(whole)])
    _ok(["build", *common, "--out", str(shards), "--shard", "0/3"])
    _ok(["build", *common, "--out", str(shards), "--shard", "1/3"])
    # the last one as torchrun would start it: no --shard, RANK/WORLD_SIZE in the environment
    printed = _ok(["build", *common, "--out", str(shards)], env={"RANK": "2", "WORLD_SIZE": "3"})
    assert "shard 2/3" in printed and "ricl index merge" in printed

    dirs = sorted(shards.iterdir())
    assert [p.name for p in dirs] == [f"shard-0000{i}-of-00003" for i in range(3)]
    metas = [json.loads((d / "manifest.json").read_text()) for d in dirs]
    sizes = [m["shard"]["stop"] - m["shard"]["start"] for m in metas]
    assert len(set(sizes)) > 1 and all(s % 3 == 0 for s in sizes[:-1])  # uneven, batch-aligned
    assert [m["shard"]["start"] for m in metas[1:]] == [m["shard"]["stop"] for m in metas[:-1]]
    for d in dirs:  # npy + JSON only, no pickle stream
        assert sorted(p.name for p in d.iterdir()) == [
            "exemplars.jsonl", "global-embeddings.npy", "manifest.json", "region-embeddings.npy"]  # fmt: skip
        assert not any(p.read_bytes().startswith(b"\x80") for p in d.iterdir())

    _ok(["merge", str(dirs[2]), str(dirs[0]), str(dirs[1]), "--out", str(merged)])  # any order
    a, b = load_index(whole), load_index(merged)
    ma, mb = a.manifest.model_dump(), b.manifest.model_dump()
    assert ma.pop("built_at") and mb.pop("built_at") and ma == mb
    for name in ("exemplars.jsonl",):
        assert (whole / name).read_bytes() == (merged / name).read_bytes()
    np.testing.assert_array_equal(a.regions, b.regions)
    for which in ("global", "regions"):
        n = a.manifest.indexes[which].ntotal
        va, vb = a.vectors(which, np.arange(n)), b.vectors(which, np.arange(n))
        np.testing.assert_array_equal(va, vb)  # identical vectors: same batches
        q = va[::4] + 0.01
        for x, y in zip(a.search(which, q, 8), b.search(which, q, 8), strict=True):
            np.testing.assert_array_equal(x, y)

    # the folder holding the shards stands for them; --index-type overrides the recorded one
    out = json.loads(_ok(["merge", str(shards), "--out", str(tmp / "hnsw"), "--index-type",
                          "hnsw", "--param", "M=8", "--json"]))  # fmt: skip
    assert out["indexes"]["global"]["type"] == "hnsw" and out["indexes"]["global"]["params"]["M"] == 8  # fmt: skip


def _shards(tmp_path, n: int = 3, **kw):
    ds = make_dataset(tmp_path)
    enc = kw.pop("encoder", FakeEncoder())
    root = tmp_path / kw.pop("root", "shards")
    for i in range(n):
        build_shard(enc, ds, "train", root, (i, n), batch_size=4, progress=False, **kw)
    return ds, root


def test_sharded_api_equals_build_index_and_resumes(tmp_path):
    ds, root = _shards(tmp_path, 4)
    m = merge_shards([root], tmp_path / "merged")
    ref = build_index(FakeEncoder(), ds, "train", tmp_path / "ref", batch_size=4, progress=False)
    assert m.model_dump(exclude={"built_at"}) == ref.model_dump(exclude={"built_at"})
    a, b = load_index(tmp_path / "merged"), load_index(tmp_path / "ref")
    ids = np.arange(m.counts.exemplars)
    np.testing.assert_array_equal(a.vectors("global", ids), b.vectors("global", ids))
    # a shard killed mid-way embeds only the rest on the rerun
    crashing = FakeEncoder(fail_after=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_shard(crashing, ds, "train", tmp_path / "again", (0, 2), batch_size=4, progress=False)  # fmt: skip
    assert not (tmp_path / "again" / "shard-00000-of-00002").exists()
    resumed = FakeEncoder()
    sm = build_shard(resumed, ds, "train", tmp_path / "again", (0, 2), batch_size=4, progress=False)  # fmt: skip
    done = [n for b in crashing.image_batches for n in b] + [n for b in resumed.image_batches for n in b]  # fmt: skip
    assert len(done) == sm.shard.stop - sm.shard.start and len(crashing.image_batches) == 1


def _one_line_error(fn, match: str) -> str:
    with pytest.raises(ShardError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_broken_shard_sets_are_refused_naming_the_directory_and_the_fix(tmp_path):
    ds, root = _shards(tmp_path, 3)
    dirs = sorted(root.iterdir())
    out = tmp_path / "idx"
    msg = _one_line_error(lambda: merge_shards(dirs[:2], out), "shard 2/3 is missing")
    assert "shard-00002-of-00003" in msg and "--shard 2/3" in msg
    twin = tmp_path / "copy-of-1"
    shutil.copytree(dirs[1], twin)
    msg = _one_line_error(lambda: merge_shards([*dirs, twin], out), "given twice")
    assert str(twin) in msg and str(dirs[1]) in msg and "pass each shard once" in msg
    _, other = _shards(tmp_path, 3, encoder=FakeEncoder("beta"), root="beta")
    foreign = other / dirs[1].name
    msg = _one_line_error(lambda: merge_shards([dirs[0], foreign, dirs[2]], out), "encoder fingerprint")  # fmt: skip
    assert str(foreign) in msg and "the same --encoder" in msg
    _, four = _shards(tmp_path, 4, root="four")
    msg = _one_line_error(lambda: merge_shards([*dirs, sorted(four.iterdir())[3]], out), "shard count 4")  # fmt: skip
    assert "--shard */N with the same N" in msg
    _, dim = _shards(tmp_path, 3, encoder=FakeEncoder(dim=8), root="dim8")
    _one_line_error(lambda: merge_shards([dirs[0], sorted(dim.iterdir())[1], dirs[2]], out), "fingerprint|embedding dim")  # fmt: skip
    _one_line_error(lambda: merge_shards([dirs[0], tmp_path / "nothing", dirs[2]], out), "nothing: no manifest.json, so not a")  # fmt: skip
    _one_line_error(lambda: merge_shards([], out), "no shard directories")
    np.save(dirs[1] / "global-embeddings.npy", np.zeros((2, 16), np.float32))
    msg = _one_line_error(lambda: merge_shards(dirs, out), "global-embeddings.npy: float32")
    assert "rebuild this shard" in msg and not out.exists()
    (dirs[1] / "global-embeddings.npy").write_bytes(b"\x80\x04 pickle")  # refused, not loaded
    _one_line_error(lambda: merge_shards(dirs, out), "global-embeddings.npy: unreadable")
    build_index(FakeEncoder(), ds, "train", tmp_path / "index", batch_size=4, progress=False)
    _one_line_error(
        lambda: build_shard(FakeEncoder(), ds, "train", tmp_path / "index", (0, 2), progress=False),
        "is an index directory",
    )


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    from ricl_apps.cli import main

    _, root = _shards(tmp_path, 3)
    shutil.rmtree(root / "shard-00001-of-00003")
    monkeypatch.setattr("sys.argv", ["ricl", "index", "merge", str(root), "--out", str(tmp_path / "i")])  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and "shard 1/3 is missing" in err
    r = runner.invoke(index_app, ["build", "--encoder", "x", "--dataset", "phantom", "--root",
                                  str(tmp_path), "--out", str(tmp_path / "o"), "--shard", "3/3"])  # fmt: skip
    assert isinstance(r.exception, ShardError) and "0 <= I < N" in str(r.exception)


def test_shard_ranges_environment_and_manifest_paths(tmp_path):
    for total, bs, n in [(10, 3, 3), (29, 4, 3), (5, 4, 3), (100, 7, 6), (1, 1, 1)]:
        ranges = [shard_range(i, n, total, bs) for i in range(n)]
        assert ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(start % bs == 0 for start, _ in ranges)
        sizes = [b - a for a, b in ranges]
        assert max(sizes) - min(sizes) <= bs
    assert shard_range(2, 3, 5, 4) == (4, 5) and shard_range(0, 3, 5, 4) == (0, 0)  # may be empty
    assert parse_shard(" 2/4 ") == (2, 4)
    for bad in ("4/4", "-1/4", "a/b", "2"):
        with pytest.raises(ShardError):
            parse_shard(bad)
    assert shard_from_env({}) is None and shard_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert shard_from_env({"WORLD_SIZE": "4", "RANK": "3"}) == (3, 4)
    with pytest.raises(ShardError, match="RANK"):
        shard_from_env({"WORLD_SIZE": "4"})
    # an index manifest naming a file outside its directory is refused, on one line
    ds = make_dataset(tmp_path)
    out = tmp_path / "idx"
    build_index(FakeEncoder(), ds, "train", out, IndexConfig(), progress=False)
    m = json.loads((out / "manifest.json").read_text())
    m["indexes"]["global"]["file"] = "../outside.faiss"
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="plain file name") as e:
        load_index(out)
    assert "\n" not in str(e.value)
