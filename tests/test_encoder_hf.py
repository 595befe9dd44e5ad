"""ricl.encoders.hf on tiny random SigLIP / SigLIP2 / CLIP checkpoints saved to disk.

Every model is loaded through ``ricl.encoders.load`` from its directory, the way users do.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ricl import encoders
from ricl.encoders import hf, hf_loading
from ricl.encoders.tokenizer import build_word_tokenizer
from ricl.errors import RiclError
from ricl.types import Box

CORPUS = [
    "small left pleural effusion",
    "right upper lobe consolidation",
    "cardiomegaly with pulmonary edema",
    "no acute findings",
    "nodule in the left lower lobe",
]
TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
FAMILIES = ["siglip", "siglip2", "clip"]


def _tokenizer(eos: bool = False):
    from tokenizers import processors

    tok = build_word_tokenizer(CORPUS)
    if eos:  # CLIP pools at the end-of-text token, which its tokenizer appends
        b, e = tok.bos_token, tok.eos_token
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{b} $A {e}", special_tokens=[(b, tok.bos_token_id), (e, tok.eos_token_id)]
        )
    return tok


def _build(family: str, directory) -> None:
    torch.manual_seed(0)
    tok = _tokenizer(eos=family == "clip")
    ids = {
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    text = dict(vocab_size=len(tok), max_position_embeddings=64, **TINY, **ids)
    if family == "siglip":
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

        cfg = transformers.SiglipConfig(
            text_config=text, vision_config=dict(image_size=32, patch_size=8, **TINY)
        )
        model = transformers.SiglipModel(cfg)
        proc = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    elif family == "siglip2":
        from transformers.models.siglip2.image_processing_pil_siglip2 import (
            Siglip2ImageProcessorPil,
        )

        cfg = transformers.Siglip2Config(
            text_config=text, vision_config=dict(num_patches=16, patch_size=8, **TINY)
        )
        model = transformers.Siglip2Model(cfg)
        proc = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    else:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        text.update(max_position_embeddings=32)
        cfg = transformers.CLIPConfig(
            text_config=text,
            vision_config=dict(image_size=32, patch_size=8, **TINY),
            projection_dim=16,
        )
        model = transformers.CLIPModel(cfg)
        proc = CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    proc.save_pretrained(directory)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    out = {}
    for family in FAMILIES:
        out[family] = tmp_path_factory.mktemp(family)
        _build(family, out[family])
    return out


@pytest.fixture(scope="module")
def encs(dirs):
    return {family: encoders.load(str(d)) for family, d in dirs.items()}


def _images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (40, 56, 3), dtype=np.uint8),  # non-square RGB
        rng.integers(0, 256, (32, 32), dtype=np.uint8),  # square grayscale
        rng.integers(0, 256, (70, 30), dtype=np.uint8),  # tall grayscale
    ]


def _unit(x: np.ndarray) -> bool:
    return np.allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------- loading
def test_load_by_dir_and_by_hf_spec(dirs, encs):
    for family, d in dirs.items():
        enc = encs[family]
        assert isinstance(enc, hf.HFEncoder) and isinstance(enc, encoders.Encoder)
        assert enc.family == family and enc.name == f"hf:{d}"
        assert enc.grid == (4, 4) and enc.side == 32
        assert enc.embed_dim == (16 if family == "clip" else 32)
    via_spec = encoders.load("hf:" + str(dirs["siglip"]))
    assert isinstance(via_spec, hf.HFEncoder) and via_spec.name == f"hf:{dirs['siglip']}"
    img = _images()[:1]
    np.testing.assert_array_equal(
        via_spec.encode_images(img).embeddings, encs["siglip"].encode_images(img).embeddings
    )


def test_missing_path_gives_clear_error(tmp_path, monkeypatch):
    with pytest.raises(hf.EncoderLoadError) as err:
        encoders.load(str(tmp_path / "no-such-model"))
    assert isinstance(err.value, RiclError)
    assert "not a local directory and the Hugging Face hub is unreachable" in str(err.value)
    assert "download the model and pass its directory" in str(err.value)
    # a hub-style id, neither cached nor reachable: fails at once, no retries
    monkeypatch.setattr(hf_loading, "_hub_reachable", lambda timeout=3.0: False)
    t0 = time.perf_counter()
    with pytest.raises(hf.EncoderLoadError, match="hub is unreachable"):
        encoders.load("hf:ricl-test-org/no-such-model")
    assert time.perf_counter() - t0 < 5


def test_unsupported_model_type(tmp_path):
    transformers.BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=1
    ).save_pretrained(tmp_path)
    with pytest.raises(hf.EncoderLoadError, match="'bert' model"):
        encoders.load(str(tmp_path))


def test_trust_remote_code_is_off_unless_asked(dirs, monkeypatch):
    calls = []
    original = transformers.AutoModel.from_pretrained

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", recording)
    encoders.load(str(dirs["siglip"]))
    assert calls[-1]["trust_remote_code"] is False
    encoders.load(str(dirs["siglip"]), trust_remote_code=True)
    assert calls[-1]["trust_remote_code"] is True


# ---------------------------------------------------------------------- images and texts
@pytest.mark.parametrize("family", FAMILIES)
def test_encode_images(encs, family):
    enc = encs[family]
    images = _images()
    out = enc.encode_images(images, batch_size=2)
    assert out.embeddings.shape == (3, enc.embed_dim) and out.embeddings.dtype == np.float32
    assert _unit(out.embeddings)
    assert out.patch_tokens.shape == (3, 16, 32) and out.patch_tokens.dtype == np.float32
    assert out.grid == (4, 4)
    assert [t.side for t in out.transforms] == [32, 32, 32]
    assert (out.transforms[0].orig_width, out.transforms[0].orig_height) == (56, 40)
    again = enc.encode_images(images, batch_size=1)  # deterministic, batch-independent
    np.testing.assert_allclose(again.embeddings, out.embeddings, atol=1e-5)
    np.testing.assert_allclose(again.patch_tokens, out.patch_tokens, atol=1e-4)
    assert not np.allclose(out.embeddings[0], out.embeddings[1])
    empty = enc.encode_images([])
    assert empty.embeddings.shape == (0, enc.embed_dim)


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_texts(encs, family):
    enc = encs[family]
    texts = ["small left pleural effusion", "cardiomegaly", "no acute findings"]
    out = enc.encode_texts(texts, batch_size=2)
    assert out.shape == (3, enc.embed_dim) and out.dtype == np.float32 and _unit(out)
    np.testing.assert_allclose(enc.encode_texts(texts), out, atol=1e-5)
    assert not np.allclose(out[0], out[1], atol=1e-3)
    assert not np.allclose(out[1], out[2], atol=1e-3)
    assert enc.encode_texts([]).shape == (0, enc.embed_dim)
    with pytest.raises(TypeError):
        enc.encode_texts("one string")


def test_text_conventions(encs):
    assert encs["siglip"].max_text_length == 64 and encs["siglip2"].max_text_length == 64
    assert encs["clip"].max_text_length == 32  # the model's max_position_embeddings
    # SigLIP pads to exactly max_text_length with no mask: the length of a batch-mate
    # changes nothing.
    enc = encs["siglip"]
    alone = enc.encode_texts(["cardiomegaly"])
    mixed = enc.encode_texts(["cardiomegaly", "nodule in the left lower lobe " * 3])
    np.testing.assert_allclose(alone[0], mixed[0], atol=1e-5)


# ---------------------------------------------------------------------- regions
@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_full_image_region_is_the_global_embedding(dirs, encs, family):
    full = Box(0.0, 0.0, 1.0, 1.0)
    square = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    enc = encs[family]
    region = enc.encode_regions([square], [[full]])
    np.testing.assert_allclose(region, enc.encode_images([square]).embeddings, atol=1e-5)
    # a stretched non-square image: the full box covers every patch too
    stretch = encoders.load(str(dirs[family]), letterbox_inputs=False)
    wide = _images()[0]
    t = stretch.encode_images([wide]).transforms[0]
    assert (t.offset_x, t.offset_y) == (0.0, 0.0) and t.box_to_square(full) == full
    np.testing.assert_allclose(
        stretch.encode_regions([wide], [[full]]),
        stretch.encode_images([wide]).embeddings,
        atol=1e-5,
    )
    assert stretch.fingerprint() != enc.fingerprint()


@pytest.mark.parametrize("family", FAMILIES)
def test_regions_shapes_order_and_difference(encs, family):
    enc = encs[family]
    images = _images()
    boxes = [
        [Box(0.0, 0.0, 0.5, 0.5), Box(0.5, 0.5, 1.0, 1.0)],
        [],
        [Box(0.1, 0.2, 0.6, 0.9)],
    ]
    out = enc.encode_regions(images, boxes, batch_size=2)
    assert out.shape == (3, enc.embed_dim) and out.dtype == np.float32 and _unit(out)
    assert not np.allclose(out[0], out[1], atol=1e-4)
    np.testing.assert_allclose(enc.encode_regions(images[2:], boxes[2:]), out[2:], atol=1e-5)
    assert enc.encode_regions(images[1:2], [[]]).shape == (0, enc.embed_dim)
    with pytest.raises(ValueError, match="3 images but 2 box lists"):
        enc.encode_regions(images, boxes[:2])


def test_boxes_map_through_the_letterbox(encs):
    enc = encs["clip"]
    wide = np.random.default_rng(2).integers(0, 256, (32, 64, 3), dtype=np.uint8)  # h=32, w=64
    out = enc.encode_images([wide])
    t = out.transforms[0]  # 64x32 -> 32x16 content, rows 8..24 of the 32 px square
    assert t.kind == "letterbox" and (t.scale_x, t.scale_y, t.offset_x, t.offset_y) == (
        0.5,
        0.5,
        0.0,
        8.0,
    )
    top_left, bottom_right = Box(0.0, 0.0, 0.5, 0.5), Box(0.5, 0.5, 1.0, 1.0)
    # 8 px patches on a 4x4 grid: top-left quarter = row 1, cols 0-1; bottom-right = row 2, cols 2-3
    assert np.flatnonzero(enc.box_mask(t, top_left)).tolist() == [4, 5]
    assert np.flatnonzero(enc.box_mask(t, bottom_right)).tolist() == [10, 11]
    assert np.flatnonzero(enc.box_mask(t, Box(0, 0, 1, 1))).tolist() == list(range(4, 12))
    # CLIP's region = visual_projection(mean of those post-layernorm patch tokens)
    tokens = torch.from_numpy(out.patch_tokens[0])
    with torch.inference_mode():
        expected = enc.model.visual_projection(tokens[[4, 5]].mean(0, keepdim=True))
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_regions([wide], [[top_left]]), expected, atol=1e-5)


def test_other_input_sizes(dirs):
    enc = encoders.load(str(dirs["siglip"]), image_size=48)  # position embeddings interpolated
    assert enc.grid == (6, 6) and enc.side == 48
    out = enc.encode_images(_images()[:2])
    assert out.patch_tokens.shape == (2, 36, 32) and _unit(out.embeddings)
    odd = encoders.load(str(dirs["siglip"]), image_size=36)  # 4 patches cover 32 of 36 px
    assert odd.grid == (4, 4)
    t = odd.transform_for(36, 36)
    assert np.flatnonzero(odd.box_mask(t, Box(0.9, 0.9, 1.0, 1.0))).tolist() == [15]
    assert np.flatnonzero(odd.box_mask(t, Box(0.0, 0.0, 0.2, 0.2))).tolist() == [0]
    assert odd.encode_regions(_images()[:1], [[Box(0.9, 0.9, 1.0, 1.0)]]).shape == (1, 32)
    v2 = encoders.load(str(dirs["siglip2"]), image_size=50)  # rounded down to 6 patches
    assert v2.grid == (6, 6) and v2.side == 48
    assert v2.encode_images(_images()[:1]).patch_tokens.shape == (1, 36, 32)


# ---------------------------------------------------------------------- fingerprint
def test_fingerprint_stable_and_tracks_weights(dirs, encs, tmp_path):
    fp = encs["siglip"].fingerprint()
    assert isinstance(fp, str) and len(fp) == 16
    assert encoders.load(str(dirs["siglip"])).fingerprint() == fp
    assert encs["siglip"].fingerprint() == fp  # cached
    assert len({e.fingerprint() for e in encs.values()}) == 3
    copy = tmp_path / "copy"
    shutil.copytree(dirs["siglip"], copy)
    assert encoders.load(str(copy)).fingerprint() == fp  # content, not location
    model = transformers.SiglipModel.from_pretrained(copy)
    with torch.no_grad():
        model.vision_model.head.probe.add_(0.01)
    model.save_pretrained(copy)
    assert encoders.load(str(copy)).fingerprint() != fp


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_the_stock_processor_on_a_native_size_image(dirs, encs, family):
    # A 32x32 image needs no resize, pad or crop: ricl's preprocessing must then give the
    # very pixels (hence features) of the model's own image processor.
    from transformers import AutoImageProcessor

    image = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    processor = AutoImageProcessor.from_pretrained(dirs[family], backend="pil")
    inputs = processor(images=[image], return_tensors="pt")
    with torch.inference_mode():
        expected = encs[family].model.get_image_features(**inputs).pooler_output
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(encs[family].encode_images([image]).embeddings, expected, atol=1e-5)


def test_device_and_dtype_options(dirs, encs):
    enc = encoders.load(str(dirs["siglip"]), device="auto", dtype="bfloat16")
    assert enc.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(enc.model.parameters()).dtype == torch.bfloat16
    images = _images()[:2]
    out = enc.encode_images(images)
    assert out.embeddings.dtype == np.float32 and out.patch_tokens.dtype == np.float32
    assert _unit(out.embeddings) and _unit(enc.encode_regions(images, [[Box(0, 0, 1, 1)]] * 2))
    reference = encs["siglip"].encode_images(images).embeddings
    assert (out.embeddings * reference).sum(-1).min() > 0.95  # bf16 ~ fp32


def test_module_import_is_light():
    code = (
        "import sys, ricl.encoders.hf; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
