"""The LoFi model on tiny configs: loss terms, save/load, encoder protocol, training + resume."""

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import ricl.encoders as E
from ricl.data import load_dataset
from ricl.data.phantom import write_phantom_release
from ricl.encoders.lofi.config import LoFiConfig, LoRAConfig, LossWeights, tiny_config
from ricl.encoders.lofi.data import LoFiCollator, load_samples
from ricl.encoders.lofi.encoder import LoFiEncoder, save_lofi_model
from ricl.encoders.lofi.model import LoFiModel
from ricl.encoders.tokenizer import build_word_tokenizer
from ricl.errors import RiclError
from ricl.types import Box
from ricl_apps.train.encoder import TrainConfig, train_encoder


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph") / "release"
    write_phantom_release(root, 60, seed=5, size=96)
    return load_dataset("phantom", root)


@pytest.fixture(scope="module")
def samples(phantom):
    return load_samples(phantom.studies_of("train"), phantom.image_file, 64)


@pytest.fixture(scope="module")
def tok(samples):
    return build_word_tokenizer(
        [s.report for s in samples] + ['Detect all instances of "".', "Describe the region."]
    )


def _model(tok, **weights):
    torch.manual_seed(0)
    return LoFiModel.build(tiny_config(64, weights=LossWeights(**weights)), tok, tok)


def test_forward_returns_the_enabled_terms_and_all_get_gradients(samples, tok):
    model = _model(tok, pseudo_seg=1.0, region_contrast=1.0)
    batch = LoFiCollator(model.config, tok, tok, seed=0)(samples[:6])
    out = model(batch)
    assert {k for k in out if k.endswith("_loss")} == {
        "sigmoid_loss", "caption_loss", "location_loss", "pseudo_seg_loss", "region_contrast_loss"
    }  # fmt: skip
    assert all(torch.isfinite(v) for v in out.values())
    assert batch["region_masks"].shape[0] == sum(len(b) for s in samples[:6] for _, b in s.findings)
    total = sum(model.config.weights.of(k) * v for k, v in out.items() if k.endswith("_loss"))
    total.backward()
    for name in (
        "vision.head.probe",
        "text_proj.weight",
        "projector.0.weight",
        "seg_head.0.weight",
        "logit_bias",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_zero_weight_switches_a_term_off(samples, tok):
    model = _model(tok, caption=0.0, location=0.0)
    out = model(LoFiCollator(model.config, tok, tok)(samples[:4]))
    assert {k for k in out if k.endswith("_loss")} == {"sigmoid_loss"}


def test_location_targets_are_boxes_on_the_square(samples, tok):
    model = _model(tok)
    col = LoFiCollator(model.config.model_copy(update={"grounding_share": 1.0}), tok, tok, seed=1)
    s = next(s for s in samples if s.findings)
    _, labels, _ = col([s])["location"]
    target = tok.decode([t for t in labels[0].tolist() if t >= 0], skip_special_tokens=True)
    assert target.startswith("[[") and target.endswith("]]")
    nums = [int(v) for v in target.strip("[]").replace("],[", ",").split(",")]
    assert all(0 <= v <= 1000 for v in nums) and len(nums) % 4 == 0


def test_save_load_round_trip_and_encoder_protocol(tmp_path, samples, tok, phantom):
    model = _model(tok).eval()
    path = save_lofi_model(model, tok, tok, tmp_path / "lofi")
    enc = E.load(str(path))
    assert isinstance(enc, E.Encoder) and isinstance(enc, LoFiEncoder) and enc.embed_dim == 64
    assert E.load(f"lofi:{path}").fingerprint() == enc.fingerprint()
    direct = LoFiEncoder(model, tok)
    files = [phantom.image_file(s) for s in phantom.studies_of("train")[:3]]
    a, b = enc.encode_images(files), direct.encode_images(files)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-6)
    assert (
        a.embeddings.shape == (3, 64) and a.patch_tokens.shape == (3, 64, 64) and a.grid == (8, 8)
    )
    np.testing.assert_allclose(np.linalg.norm(a.embeddings, axis=1), 1.0, atol=1e-5)
    # the full-image region is the global embedding (same pooling over all patches)
    full = enc.encode_regions(files[:1], [[Box(0, 0, 1, 1)]])
    np.testing.assert_allclose(full[0], a.embeddings[0], atol=1e-5)
    regions = enc.encode_regions(
        files[:2], [[Box(0, 0, 0.3, 0.3), Box(0.6, 0.6, 1, 1)], [Box(0.2, 0.2, 0.5, 0.9)]]
    )
    assert regions.shape == (3, 64) and not np.allclose(regions[0], regions[1])
    t = enc.encode_texts(["small nodule", "pleural effusion"])
    assert t.shape == (2, 64) and not np.allclose(t[0], t[1])
    # weights change -> fingerprint changes
    with torch.no_grad():
        model.image_proj.bias.add_(0.1)
    save_lofi_model(model, tok, tok, tmp_path / "lofi")
    assert E.load(str(path)).fingerprint() != enc.fingerprint()


def test_lora_is_applied_and_round_trips(tmp_path, tok, phantom):
    torch.manual_seed(0)
    model = LoFiModel.build(tiny_config(64, lora=LoRAConfig(r=2, alpha=4)), tok, tok).eval()
    assert any("lora_A" in n for n, _ in model.named_parameters())
    path = save_lofi_model(model, tok, tok, tmp_path / "lora")
    files = [phantom.image_file(phantom.studies_of("train")[0])]
    np.testing.assert_allclose(
        E.load(str(path)).encode_images(files).embeddings,
        LoFiEncoder(model, tok).encode_images(files).embeddings,
        atol=1e-6,
    )


def test_config_is_validated_in_one_place():
    with pytest.raises(ValidationError, match="extra"):
        LoFiConfig.model_validate({**tiny_config().model_dump(), "bogus": 1})
    with pytest.raises(ValidationError, match="multiple of patch_size"):
        tiny_config(60)
    with pytest.raises(ValidationError, match="model_type"):
        LoFiConfig(decoder={})
    with pytest.raises(RiclError, match="not a LoFi model directory"):
        E.ENCODERS.get("lofi")("/nonexistent")


def test_training_resumes_to_the_same_weights(tmp_path, phantom):
    from safetensors.torch import load_file

    base = {"dataset": {"root": str(phantom.root)}, "steps": 8, "batch_size": 8, "checkpoint_every": 4, "log_every": 2,
            "model": tiny_config(64).model_dump(), "max_eval_studies": 6}  # fmt: skip
    full = TrainConfig.model_validate({**base, "out_dir": str(tmp_path / "a")})
    metrics = train_encoder(full, progress=False)
    assert 0.0 <= metrics["loc_P@5"] <= 1.0 and metrics["n_query_images"] == 6
    cut = TrainConfig.model_validate({**base, "out_dir": str(tmp_path / "b")})
    assert train_encoder(cut, progress=False, stop_after=5) is None  # interrupted after step 5
    assert (
        json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())["step"] == 5
    )
    with pytest.raises(RiclError, match="--resume"):
        train_encoder(cut, progress=False)
    train_encoder(cut, progress=False, resume=True)
    a = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    losses = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses if "loss" in r] == [2, 4, 6, 8]


def test_mean_text_pooling_ignores_padding(tok):
    torch.manual_seed(0)
    model = LoFiModel.build(
        tiny_config(64, text_pooling="mean", max_text_length=40), tok, tok
    ).eval()
    enc = tok(["small nodule in the right upper lobe"], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    pad = torch.full((1, 8), tok.pad_token_id)
    with torch.no_grad():
        a = model.text_embeds(ids, mask)
        b = model.text_embeds(torch.cat([ids, pad], 1), torch.cat([mask, torch.zeros_like(pad)], 1))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_batchnorm_embeddings_train_spread_and_round_trip(tmp_path, samples, tok, phantom):
    torch.manual_seed(0)
    model = LoFiModel.build(tiny_config(64, batchnorm_embeddings=True), tok, tok)
    batch = LoFiCollator(model.config, tok, tok)(samples[:8])
    with torch.no_grad():
        emb = model.image_embeds(batch["pixel_values"])["embeds"]  # training mode: batch statistics
    # centred per batch: the mean embedding is far from unit length (no common mode)
    assert emb.mean(0).norm() < 0.5
    assert model.image_norm.num_batches_tracked.item() == 1
    model.eval()
    path = save_lofi_model(model, tok, tok, tmp_path / "bn")
    files = [phantom.image_file(s) for s in phantom.studies_of("train")[:2]]
    a = E.load(str(path)).encode_images(files).embeddings
    np.testing.assert_allclose(
        a, LoFiEncoder(model, tok).encode_images(files).embeddings, atol=1e-6
    )
    full = E.load(str(path)).encode_regions(files[:1], [[Box(0, 0, 1, 1)]])
    np.testing.assert_allclose(full[0], a[0], atol=1e-5)
