"""``ricl index build`` / ``ricl index query`` end to end: a tiny phantom release and a
tiny (random-weight) LoFi encoder directory."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ricl.data.phantom import write_phantom_release
from ricl.data.registry import load_dataset
from ricl.retrieval.errors import IndexMismatchError
from ricl.retrieval.exemplars import Exemplar
from ricl.retrieval.retriever import Retriever
from ricl_apps.index_cli import index_app

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from ricl.encoders.lofi.config import tiny_config
    from ricl.encoders.lofi.encoder import save_lofi_model
    from ricl.encoders.lofi.model import LoFiModel
    from ricl.encoders.tokenizer import build_word_tokenizer

    tmp = tmp_path_factory.mktemp("icli")
    release = tmp / "release"
    write_phantom_release(release, 40, seed=3, size=96)
    ds = load_dataset("phantom", release)
    tok = build_word_tokenizer([f.sentence_en for s in ds.studies for f in s.findings])

    def encoder_dir(name: str, seed: int):
        torch.manual_seed(seed)
        model = LoFiModel.build(tiny_config(64), tok, tok).eval()
        return save_lofi_model(model, tok, tok, tmp / name)

    return {"tmp": tmp, "release": release, "ds": ds, "enc": encoder_dir("lofi", 0),
            "other": encoder_dir("other", 1)}  # fmt: skip


def _ok(args: list[str]) -> str:
    r = runner.invoke(index_app, args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def test_build_then_query_json(setup):
    out = setup["tmp"] / "indexes" / "phantom"
    _ok(["build", "--encoder", str(setup["enc"]), "--dataset", "phantom", "--root", str(setup["release"]),
         "--split", "train", "--out", str(out), "--index-type", "hnsw", "--param", "M=8",
         "--batch-size", "8"])  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoder"]["spec"] == str(setup["enc"].resolve())
    assert manifest["indexes"]["global"]["params"]["M"] == 8 and manifest["counts"]["regions"] > 0

    ds = setup["ds"]
    query = next(s for s in ds.studies_of("test") if not s.is_normal)
    image = ds.image_file(query)
    payload = json.loads(_ok(["query", "--index", str(out), "--image", str(image), "-k", "3", "--json"]))  # fmt: skip
    assert payload["query"]["selector"] == "fine-grained" and len(payload["exemplars"]) == 3
    assert payload["settings"]["allow_same_patient"] is False
    train = {s.study_id: s for s in ds.studies_of("train")}
    retriever = Retriever(out)
    for e in payload["exemplars"]:
        assert e["study_id"] in train
        path = retriever.image_file(Exemplar.from_dict(e))
        assert path == ds.image_file(train[e["study_id"]]) and path.is_file()

    box = query.findings[[f.abnormal for f in query.findings].index(True)].boxes[0]
    loc = json.loads(_ok(["query", "--index", str(out), "--image", str(image), "--box",
                          ",".join(map(str, box.to_list())), "-k", "2", "--json"]))  # fmt: skip
    assert loc["query"]["selector"] == "location" and all(e["matched_region"] for e in loc["exemplars"])  # fmt: skip

    # a training image as query, with its ids: the guard keeps its patient out
    own = next(s for s in ds.studies_of("train") if not s.is_normal)
    guarded = json.loads(_ok(["query", "--index", str(out), "--image", str(ds.image_file(own)), "-k", "5",
                              "--study-id", own.study_id, "--patient-id", own.patient_id, "--json"]))  # fmt: skip
    assert all(e["patient_id"] != own.patient_id for e in guarded["exemplars"])

    text = _ok(["query", "--index", str(out), "--phrase", "pleural effusion", "-k", "2"])
    assert "text" in text and "rank" in text  # a table

    r = runner.invoke(index_app, ["query", "--index", str(out), "--image", str(image), "--encoder", str(setup["other"])])  # fmt: skip
    assert isinstance(r.exception, IndexMismatchError)
    assert str(setup["other"]) in str(r.exception) and str(setup["enc"]) in str(r.exception)


def test_bad_parameters_and_mounting(setup):
    r = runner.invoke(index_app, ["build", "--encoder", str(setup["enc"]), "--dataset", "phantom",
                                  "--root", str(setup["release"]), "--out", str(setup["tmp"] / "x"),
                                  "--index-type", "flat", "--param", "nlist=4"])  # fmt: skip
    # a ConfigError (the console entry point prints it as one line and exits 2)
    from ricl.config import ConfigError

    assert isinstance(r.exception, ConfigError) and "'nlist' is a parameter of index type 'ivf'" in str(r.exception)
    assert "\n" not in str(r.exception) and not (setup["tmp"] / "x").exists()
    app = typer.Typer()
    app.add_typer(index_app, name="index")
    help_text = runner.invoke(app, ["index", "--help"]).output
    assert "build" in help_text and "query" in help_text
