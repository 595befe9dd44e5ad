"""The LoFi recipe on its real architectures: tiny random SigLIP / NaFlex SigLIP 2 dual
encoders and a Gemma-3 decoder, saved to disk and loaded the way the full-size recipe
loads them (``model.vision_pretrained`` / ``model.decoder_pretrained``), trained through
``ricl train-encoder``, reloaded, indexed and queried."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file
from typer.testing import CliRunner

import ricl.encoders as E
from ricl.data import load_dataset
from ricl.data.phantom import write_phantom_release
from ricl.encoders.lofi.config import LoFiConfig
from ricl.encoders.lofi.data import pixels_to_tensor
from ricl.encoders.lofi.model import LoFiModel
from ricl.encoders.lofi.pretrained import PretrainedError, load_tokenizers
from ricl.encoders.lofi.tiny_real import (
    build_tiny_gemma3,
    build_tiny_siglip,
)
from ricl_apps.cli import app

FAMILIES = ["siglip", "siglip2"]
LR, STEPS = 1e-4, 4


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph") / "release"
    write_phantom_release(root, 30, seed=3, size=96)
    return root


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny checkpoints: SigLIP with its own normalization (so following it is visible),
    NaFlex SigLIP 2 whose 4x4 position grid is resized to the 8x8 patch grid, Gemma-3."""
    base = tmp_path_factory.mktemp("ckpt")
    return {
        "siglip": build_tiny_siglip(base / "siglip", image_mean=(0.4,) * 3, image_std=(0.3,) * 3),
        "siglip2": build_tiny_siglip(base / "siglip2", family="siglip2", position_grid=4),
        "gemma3": build_tiny_gemma3(base / "gemma3"),
    }


def _config(ckpts, family, **changes):
    return LoFiConfig.model_validate({"embed_dim": 48, "vision_pretrained": str(ckpts[family]),
                                      "decoder_pretrained": str(ckpts["gemma3"]), **changes})  # fmt: skip


def _same(module, reference) -> None:
    ref = reference.state_dict()
    got = module.state_dict()
    assert got.keys() == ref.keys()
    for k, v in got.items():
        assert torch.equal(v, ref[k]), k


@pytest.mark.parametrize("family", FAMILIES)
def test_build_loads_the_checkpoints_and_their_preprocessing(ckpts, family):
    cfg = _config(ckpts, family)
    text_tok, dec_tok = load_tokenizers(cfg, corpus=[])
    assert type(text_tok).__name__ == type(dec_tok).__name__ == "GemmaTokenizer"
    assert (
        text_tok.get_vocab()
        == transformers.AutoTokenizer.from_pretrained(ckpts[family]).get_vocab()
    )
    assert dec_tok.chat_template and text_tok.padding_side == "right"
    model = LoFiModel.build(cfg, text_tok, dec_tok).eval()
    c = model.config
    assert (c.towers, c.image_size, c.grid, c.max_text_length) == (family, 64, (8, 8), 32)
    assert c.image_mean == ((0.4,) * 3 if family == "siglip" else (0.5,) * 3)
    assert c.decoder["model_type"] == "gemma3_text" and c.vision_pretrained is None
    sig = transformers.AutoModel.from_pretrained(ckpts[family])
    dec = transformers.AutoModelForCausalLM.from_pretrained(ckpts["gemma3"])
    assert type(sig).__name__ == ("SiglipModel" if family == "siglip" else "Siglip2Model")
    assert type(model.decoder).__name__ == "Gemma3ForCausalLM"
    _same(model.vision, sig.vision_model)
    _same(model.text, sig.text_model)
    _same(model.decoder, dec)
    # the patch tokens are the checkpoint's own pipeline's: its image processor + vision model
    proc = transformers.AutoImageProcessor.from_pretrained(ckpts[family])
    grey = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    ref_in = proc(images=[np.repeat(grey[..., None], 3, axis=2)], return_tensors="pt")
    with torch.no_grad():
        want = sig.vision_model(**ref_in).last_hidden_state
        got = model.vision_tokens(pixels_to_tensor([grey], c.image_mean, c.image_std))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_checkpoint_of_another_family_is_refused(ckpts):
    with pytest.raises(PretrainedError, match="SigLIP or SigLIP 2 dual encoder"):
        LoFiModel.build(
            _config(ckpts, "siglip", vision_pretrained=str(ckpts["gemma3"])), None, None
        )
    with pytest.raises(PretrainedError, match="projector_pool"):
        LoFiModel.build(_config(ckpts, "siglip", projector_pool=3), None, None)


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in b)


@pytest.mark.parametrize("family", FAMILIES)
def test_train_encoder_cli_on_real_architectures_then_index_and_retrieve(
    tmp_path, release, ckpts, family
):
    from ricl.retrieval.build import build_index
    from ricl.retrieval.retriever import Retriever

    run = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "dataset": {"name": "phantom", "root": str(release)}, "steps": STEPS, "batch_size": 8,
        "lr": LR, "warmup_steps": 0, "log_every": 1, "checkpoint_every": 2, "max_eval_studies": 4,
        "out_dir": str(run), "model": {"embed_dim": 48},
    }))  # fmt: skip
    pretrained = ["--set", f"model.vision_pretrained={ckpts[family]}",
                  "--set", f"model.decoder_pretrained={ckpts['gemma3']}"]  # fmt: skip
    r = CliRunner().invoke(app, ["train-encoder", "--config", str(recipe), *pretrained])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]  # seeded: 4 steps at lr 1e-4 lower the summed loss
    # the checkpoint keeps each tower's own tokenizer
    ckpt = run / "checkpoint"
    text_tok = transformers.AutoTokenizer.from_pretrained(ckpt / "text_tokenizer")
    dec_tok = transformers.AutoTokenizer.from_pretrained(ckpt / "decoder_tokenizer")
    assert (
        text_tok.get_vocab()
        == transformers.AutoTokenizer.from_pretrained(ckpts[family]).get_vocab()
    )
    assert dec_tok.chat_template and "<end_of_turn>" in dec_tok.get_vocab()

    # trained from the checkpoints: each weight moved, by at most ~lr per Adam step
    trained = load_file(str(run / "model" / "model.safetensors"))
    sig = transformers.AutoModel.from_pretrained(ckpts[family])
    dec = transformers.AutoModelForCausalLM.from_pretrained(ckpts["gemma3"])
    for prefix, ref in (
        ("vision.", sig.vision_model),
        ("text.", sig.text_model),
        ("decoder.", dec),
    ):
        ref_sd = {prefix + k: v for k, v in ref.state_dict().items() if prefix + k in trained}
        assert len(ref_sd) > 10
        assert 0 < _max_diff(trained, ref_sd) <= 3 * STEPS * LR, prefix

    # reload, embed, index, retrieve
    enc = E.load(str(run / "model"))
    assert enc.model.config.towers == family
    loaded = enc.model.state_dict()  # the file stores tied decoder embeddings once
    assert all(torch.equal(loaded[k], v) for k, v in trained.items())
    ds = load_dataset("phantom", release)
    files = [ds.image_file(s) for s in ds.studies_of("train")[:3]]
    imgs = enc.encode_images(files)
    assert imgs.embeddings.shape == (3, 48) and imgs.grid == (8, 8)
    texts = enc.encode_texts(["small nodule in the right upper lobe", "left pleural effusion"])
    assert texts.shape == (2, 48)
    for x in (imgs.embeddings, texts):
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    index = tmp_path / "index"
    build_index(enc, ds, "train", index, progress=False, encoder_spec=str(run / "model"))
    query = ds.studies_of("test")[0]
    got = Retriever(index, enc).retrieve(ds.image_file(query), k=3, study_id=query.study_id,
                                         patient_id=query.patient_id)  # fmt: skip
    assert len(got) == 3 and all(e.study_id != query.study_id for e in got)

    # resumed from the step-2 checkpoint: the same weights as the uninterrupted run
    r = CliRunner().invoke(app, ["train-encoder", "--config", str(recipe), *pretrained, "--resume"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3, 4, 3, 4]
    again = load_file(str(run / "model" / "model.safetensors"))
    assert _max_diff(again, trained) < 1e-6


def test_the_full_size_recipe_runs_on_tiny_stand_ins(tmp_path, release, ckpts):
    """eval/encoder/lofi_so400m_gemma3.yaml as shipped, with only the paths, data set and
    lengths overridden: its settings (projector_pool 3, embed_dim 1152, ...) train."""
    from pathlib import Path

    from ricl_apps.train.encoder import TrainConfig, train_encoder

    recipe = Path(__file__).resolve().parents[1] / "eval" / "encoder" / "lofi_so400m_gemma3.yaml"
    vision = build_tiny_siglip(tmp_path / "siglip48", image_size=48)  # 6 x 6 patches, pool 3
    overrides = {"dataset.name": "phantom", "dataset.root": str(release), "steps": 2,
                 "batch_size": 8, "warmup_steps": 0, "eval_every": 0, "max_eval_studies": 4,
                 "out_dir": str(tmp_path / "run"), "model.vision_pretrained": str(vision),
                 "model.decoder_pretrained": str(ckpts["gemma3"])}  # fmt: skip
    cfg = TrainConfig.from_file(recipe, overrides)
    assert cfg.model.projector_pool == 3 and cfg.batch_size == 8
    metrics = train_encoder(cfg, progress=False)
    assert metrics["n_query_images"] == 4
    model_cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert (model_cfg["image_size"], model_cfg["embed_dim"], model_cfg["towers"]) == (
        48,
        1152,
        "siglip",
    )


def test_siglip2_towers_from_scratch_round_trip(tmp_path):
    from ricl.encoders.lofi.config import tiny_config
    from ricl.encoders.lofi.encoder import LoFiEncoder, save_lofi_model
    from ricl.encoders.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(["small nodule", "pleural effusion"])
    torch.manual_seed(0)
    model = LoFiModel.build(tiny_config(64, towers="siglip2"), tok, tok).eval()
    assert type(model.vision).__name__ == "Siglip2VisionModel"
    path = save_lofi_model(model, tok, tok, tmp_path / "lofi")
    image = np.random.default_rng(1).integers(0, 256, (80, 64), dtype=np.uint8)
    a = E.load(str(path)).encode_images([image]).embeddings
    np.testing.assert_allclose(
        a, LoFiEncoder(model, tok).encode_images([image]).embeddings, atol=1e-6
    )
