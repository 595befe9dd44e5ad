"""Tests of the LoFi encoder loss functions (ricl.encoders.lofi.losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ricl.encoders.lofi.losses import (
    body_mask_from_pixels,
    dice_bce_loss,
    format_box_answer,
    init_logit_params,
    lm_loss,
    parse_box_answer,
    pseudo_masks_from_attention,
    region_contrast_loss,
    same_key_mask,
    sigmoid_loss,
)


def _emb(n: int, d: int = 8, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


def _ref_sigmoid(x: np.ndarray, y: np.ndarray, t: float, b: float, pos: np.ndarray) -> float:
    total = 0.0
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            z = 1.0 if pos[i, j] else -1.0
            logit = float(x[i] @ y[j]) * math.exp(t) + b
            total += math.log1p(math.exp(-z * logit))  # -log sigmoid(z * logit)
    return total / x.shape[0]


# --- SigLIP -------------------------------------------------------------------------------


def test_sigmoid_loss_matches_loop():
    x, y = _emb(5, seed=1), _emb(5, seed=2)
    t, b = torch.tensor(1.3, dtype=torch.float64), torch.tensor(-2.0, dtype=torch.float64)
    got = sigmoid_loss(x, y, t, b)
    want = _ref_sigmoid(x.numpy(), y.numpy(), 1.3, -2.0, np.eye(5, dtype=bool))
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_sigmoid_loss_alignment_vs_shuffled():
    x32 = torch.linalg.qr(torch.randn(16, 8, generator=torch.Generator().manual_seed(3)))[0].T
    t, b = torch.tensor(math.log(100.0)), torch.tensor(-10.0)  # orthonormal rows: x32 (8, 16)
    aligned = sigmoid_loss(x32, x32, t, b).item()
    shuffled = sigmoid_loss(x32, x32.roll(1, dims=0), t, b).item()
    assert aligned < 0.5
    assert shuffled > 20 * aligned and shuffled > 5


def test_positives_mask_for_duplicate_texts():
    x = _emb(4, seed=4)
    x[1] = x[0]  # images 0/1 and texts 0/1 are duplicates
    t, b = torch.tensor(math.log(20.0), dtype=torch.float64), torch.tensor(-5.0)
    pos = torch.eye(4, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True
    plain = sigmoid_loss(x, x, t, b).item()
    masked = sigmoid_loss(x, x, t, b, positives=pos).item()
    assert masked == pytest.approx(_ref_sigmoid(x.numpy(), x.numpy(), math.log(20.0), -5.0, pos))
    assert masked < plain - 1.0  # the duplicate pair is no longer pushed apart
    # the diagonal is always positive: an all-False mask is the default
    none = torch.zeros(4, 4, dtype=torch.bool)
    assert sigmoid_loss(x, x, t, b, positives=none).item() == pytest.approx(plain)
    with pytest.raises(ValueError):
        sigmoid_loss(x, x, t, b, positives=torch.ones(3, 3, dtype=torch.bool))


def test_sigmoid_gradients_and_init():
    scale, bias = init_logit_params()
    assert scale.item() == pytest.approx(math.log(10.0))
    assert bias.item() == pytest.approx(-10.0)
    assert scale.requires_grad and bias.requires_grad and scale.dim() == 0
    raw_x = torch.randn(6, 8, requires_grad=True)
    raw_y = torch.randn(6, 8, requires_grad=True)
    loss = sigmoid_loss(F.normalize(raw_x, dim=-1), F.normalize(raw_y, dim=-1), scale, bias)
    loss.backward()
    for p in (raw_x, raw_y, scale, bias):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_sigmoid_half_precision_inputs():
    x = _emb(4, seed=5).to(torch.bfloat16)
    scale, bias = init_logit_params()
    loss = sigmoid_loss(x, x, scale, bias)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ref = sigmoid_loss(x.float(), x.float(), scale, bias)
    assert loss.item() == pytest.approx(ref.item())


# --- G2D body mask / pseudo masks -----------------------------------------------------------


def test_body_mask_excludes_letterbox_padding():
    img = torch.full((2, 3, 64, 64), -1.0)  # exact padding everywhere
    img[0, :, 16:48, :] = 0.2  # letterboxed content rows 16..47 (intensity 0.6)
    mask = body_mask_from_pixels(img, (8, 8))
    assert mask.dtype == torch.bool and mask.shape == (2, 8, 8)
    assert mask[0, 2:6].all() and not mask[0, :2].any() and not mask[0, 6:].any()
    assert mask[1].all()  # an all-padding image falls back to all-True
    # threshold 0 still drops padding (padding rule, not intensity)
    assert not body_mask_from_pixels(img, (8, 8), threshold=0.0)[0, :2].any()


def test_body_mask_drops_dark_background_and_is_never_empty():
    img = torch.full((1, 1, 32, 32), -0.98)  # near-black air (intensity 0.01), not padding
    img[:, :, 8:24, 8:24] = 0.0  # patient, intensity 0.5
    mask = body_mask_from_pixels(img, (4, 4))
    assert mask[0, 1:3, 1:3].all() and mask.sum() == 4
    dark = torch.full((1, 1, 32, 32), -0.98)  # uniform: every patch at the max level
    assert body_mask_from_pixels(dark, (4, 4)).any()


def _body(h: int = 16, w: int = 16) -> torch.Tensor:
    body = torch.zeros(1, h, w, dtype=torch.bool)
    body[:, 2:14, 2:14] = True
    return body


def test_pseudo_mask_hot_region_inside_body():
    g = torch.Generator().manual_seed(0)
    attn = torch.rand(1, 16, 16, generator=g) * 1e-4
    attn[0, 6:8, 8:10] = 1.0  # hot 2x2 region
    attn[0, 0, 0] = 1.0  # as hot, but outside the body
    mask = pseudo_masks_from_attention(attn, _body(), percentile=85.0)
    assert mask.dtype == attn.dtype and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert mask[0, 6:8, 8:10].all()
    assert mask[~_body()].sum() == 0
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    assert ((ys - 6.5).abs() <= 4).all() and ((xs - 8.5).abs() <= 4).all()


@pytest.mark.parametrize("percentile", [50.0, 85.0, 95.0])
def test_pseudo_mask_share_of_ones(percentile: float):
    g = torch.Generator().manual_seed(1)
    attn = torch.rand(3, 16, 16, generator=g, requires_grad=True)
    body = _body().expand(3, -1, -1)
    mask = pseudo_masks_from_attention(attn, body, percentile=percentile, smooth_sigma=1.0)
    assert not mask.requires_grad
    share = mask.sum(dim=(1, 2)) / body.sum(dim=(1, 2))
    assert torch.allclose(share, torch.full_like(share, 1 - percentile / 100), atol=0.02)


def test_pseudo_mask_no_smoothing_and_flat_map():
    attn = torch.arange(16.0).view(1, 4, 4)
    body = torch.ones(1, 4, 4, dtype=torch.bool)
    mask = pseudo_masks_from_attention(attn, body, percentile=75.0, smooth_sigma=0.0)
    assert mask.flatten().tolist() == [0.0] * 12 + [1.0] * 4
    flat = pseudo_masks_from_attention(torch.ones(1, 4, 4), body)
    assert flat.sum() == 0  # no structure, no pseudo label


# --- Dice + BCE ---------------------------------------------------------------------------


def test_dice_bce_perfect_inverted_and_manual():
    g = torch.Generator().manual_seed(2)
    target = (torch.rand(2, 8, 8, generator=g) > 0.6).float()
    perfect = torch.where(target > 0, 20.0, -20.0)
    assert dice_bce_loss(perfect, target).item() < 1e-3
    assert dice_bce_loss(-perfect, target).item() > 15
    logits = torch.randn(2, 8, 8, generator=g, dtype=torch.float64)
    p = 1 / (1 + np.exp(-logits.numpy()))
    t = target.double().numpy()
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    dice = [(2 * (p[i] * t[i]).sum() + 1) / (p[i].sum() + t[i].sum() + 1) for i in range(2)]
    want = bce + np.mean([1 - d for d in dice])
    assert dice_bce_loss(logits, target).item() == pytest.approx(want, rel=1e-10)


# --- ALC-ITR region contrast --------------------------------------------------------------


def test_region_contrast_empty_and_differentiable():
    scale, bias = init_logit_params()
    empty = torch.zeros(0, 8, requires_grad=True)
    loss = region_contrast_loss(empty, torch.zeros(0, 8), scale, bias)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    raw = torch.randn(5, 8, requires_grad=True)
    phrases = _emb(5, seed=6).float()
    same = same_key_mask(["opacity", "effusion", "opacity", "nodule", "effusion"])
    assert same[0, 2] and same[1, 4] and not same[0, 1] and same.diagonal().all()
    loss = region_contrast_loss(F.normalize(raw, dim=-1), phrases, scale, bias, same)
    ref = sigmoid_loss(F.normalize(raw, dim=-1), phrases, scale, bias, positives=same)
    assert loss.item() == pytest.approx(ref.item())
    loss.backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0 and scale.grad is not None


# --- LM loss ------------------------------------------------------------------------------


def test_lm_loss_matches_cross_entropy_with_shift():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 11, generator=g, requires_grad=True)
    labels = torch.randint(0, 11, (2, 6), generator=g)
    labels[0, :3] = -100  # prompt tokens
    labels[1, 4] = -100
    want = torch.nn.CrossEntropyLoss()(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    got = lm_loss(logits, labels)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    # labels at ignored positions do not matter
    changed = labels.clone()
    changed[0, :3] = 0
    changed[1, 4] = 5
    assert lm_loss(logits, changed).item() != pytest.approx(got.item())
    changed[0, :3], changed[1, 4] = -100, -100
    assert lm_loss(logits, changed).item() == pytest.approx(got.item())


def test_lm_loss_nothing_supervised():
    logits = torch.randn(2, 4, 7, requires_grad=True)
    loss = lm_loss(logits, torch.full((2, 4), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and (logits.grad == 0).all()


# --- location-aware captioning boxes --------------------------------------------------------


def test_format_box_examples():
    assert format_box_answer([(0.0, 0.0, 1.0, 1.0)]) == "[[0,0,1000,1000]]"
    assert format_box_answer([]) == "[]"
    boxes = [(0.5, 0.2, 0.7, 0.4), (0.1, 0.3, 0.2, 0.6), (0.1, 0.1, 0.3, 0.2)]
    assert format_box_answer(boxes) == "[[100,100,300,200],[100,300,200,600],[500,200,700,400]]"
    assert format_box_answer([(0.25, 0.3, 0.25, 1.2)]) == "[[250,300,251,1000]]"  # widen, clamp
    assert format_box_answer([(1.0, 1.0, 1.0, 1.0)]) == "[[999,999,1000,1000]]"
    assert format_box_answer([(0.0005, 0.0015, 0.5, 0.5)]) == "[[0,2,500,500]]"  # half-even
    with pytest.raises(ValueError):
        format_box_answer([(0.0, float("nan"), 1.0, 1.0)])


def test_parse_box_examples():
    assert parse_box_answer("[[0,0,1000,1000]]") == [(0, 0, 1000, 1000)]
    text = "The finding is at [ [ 10, 20 ,30,40 ],\n [5,6,7,8]] and also [[1,1,2,2]]."
    assert parse_box_answer(text) == [(10, 20, 30, 40), (5, 6, 7, 8)]
    assert parse_box_answer("[[1,2,3],[4,5,6,7],[1.5,2,3,4],[a,b,c,d]]") == [(4, 5, 6, 7)]
    assert parse_box_answer("no box here") == []
    assert parse_box_answer("[]") == []
    assert parse_box_answer("list: [1,2,3,4]") == []  # needs a list of lists


def _ref_int_box(b: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    v = [min(1000, max(0, round(c * 1000))) for c in b]
    x1, x2 = sorted((v[0], v[2]))
    y1, y2 = sorted((v[1], v[3]))
    if x1 == x2:
        x1, x2 = (x1 - 1, x2) if x2 == 1000 else (x1, x2 + 1)
    if y1 == y2:
        y1, y2 = (y1 - 1, y2) if y2 == 1000 else (y1, y2 + 1)
    return x1, y1, x2, y2


_coord = st.floats(min_value=-0.1, max_value=1.1, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_coord, _coord, _coord, _coord), max_size=6))
def test_box_round_trip(boxes: list[tuple[float, float, float, float]]):
    text = format_box_answer(boxes)
    assert " " not in text
    parsed = parse_box_answer(text)
    assert parsed == sorted(_ref_int_box(b) for b in boxes)
    assert all(0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000 for x1, y1, x2, y2 in parsed)
    assert format_box_answer([tuple(c / 1000 for c in b) for b in parsed]) == text
    assert parse_box_answer(f"Answer: {text} (done)") == parsed
