"""Loss functions of the LoFi-style fine-grained image encoder (pure torch functions).

Terms (the model combines them; every loss returns a scalar with a gradient path):

* :func:`sigmoid_loss` -- the **SigLIP** pairwise sigmoid loss (Zhai et al., "Sigmoid Loss
  for Language Image Pre-Training", 2023): each image/text pair of the batch is an
  independent binary problem, ``-sum(logsigmoid(z_ij * (t * <x_i, y_j> + b))) / B`` with
  ``z = +1`` on positives and ``-1`` elsewhere, ``t = exp(t')``, ``t' = log 10``, ``b = -10``
  at initialisation (:func:`init_logit_params`). **LoFi** trains its encoder with this loss
  plus captioning and location-aware captioning through a small LLM decoder; both
  captioning terms use :func:`lm_loss`, and the location-aware answers are box lists
  written by :func:`format_box_answer` (read back by :func:`parse_box_answer`).
* :func:`pseudo_masks_from_attention` + :func:`dice_bce_loss` -- the **G2D** pseudo
  segmentation task: masks made on the fly, without parameters, from the head-averaged
  attention-pooling map (Gaussian smoothing, thresholded at a percentile of the values
  inside the body mask of :func:`body_mask_from_pixels`) supervise a light decoder with
  Dice + BCE.
* :func:`region_contrast_loss` -- **ALC-ITR**-style location-conditioned contrast: region
  embeddings pooled inside gold boxes against their phrases, across all regions of the
  batch, with the sigmoid loss (identical phrases count as positives).

All losses are computed in float32 when given float16/bfloat16 (float64 stays float64).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ricl.boxes.codecs.lofi import format_box_ints

__all__ = [
    "body_mask_from_pixels",
    "dice_bce_loss",
    "format_box_answer",
    "init_logit_params",
    "lm_loss",
    "parse_box_answer",
    "pseudo_masks_from_attention",
    "region_contrast_loss",
    "same_key_mask",
    "sigmoid_loss",
    "sigmoid_loss_rows",
]

BOX_SCALE = 1000  # location-aware captioning coordinates are integers 0..BOX_SCALE
PAD_EPS = 1e-3  # a pixel is letterbox padding when its [0, 1] intensity is <= PAD_EPS


def _acc(x: Tensor) -> Tensor:
    """Accumulation dtype: half precision goes to float32, everything else is kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def init_logit_params(
    scale_init: float = 10.0, bias_init: float = -10.0
) -> tuple[nn.Parameter, nn.Parameter]:
    """SigLIP initialisation: ``(t' = log(scale_init), b = bias_init)`` as 0-d parameters."""
    scale = nn.Parameter(torch.tensor(math.log(scale_init), dtype=torch.float32))
    bias = nn.Parameter(torch.tensor(float(bias_init), dtype=torch.float32))
    return scale, bias


def same_key_mask(keys: Sequence[Hashable], device: torch.device | str | None = None) -> Tensor:
    """(M, M) bool mask, True where ``keys[i] == keys[j]`` (e.g. normalized phrase texts)."""
    ids: dict[Hashable, int] = {}
    idx = torch.tensor([ids.setdefault(k, len(ids)) for k in keys], dtype=torch.long)
    return (idx[:, None] == idx[None, :]).to(device)


def sigmoid_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    logit_bias: Tensor,
    positives: Tensor | None = None,
) -> Tensor:
    """SigLIP loss of (B, d) L2-normalized embeddings; positives (B, B) bool, default diagonal.

    The diagonal is always positive (``positives`` is OR-ed with the identity), so a mask
    only needs to add the off-diagonal duplicates. Normalized by B, as in the paper.
    """
    b = image_emb.shape[0]
    if text_emb.shape[0] != b:
        raise ValueError(f"image_emb has {b} rows, text_emb {text_emb.shape[0]}")
    return sigmoid_loss_rows(image_emb, text_emb, logit_scale, logit_bias, positives)


def sigmoid_loss_rows(
    image_rows: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    logit_bias: Tensor,
    positives: Tensor | None = None,
    row_offset: int = 0,
    normalizer: float | None = None,
) -> Tensor:
    """Rows ``[row_offset, row_offset + b)`` of the SigLIP loss of a B x B problem.

    ``image_rows`` (b, d) are those rows' image embeddings, ``text_emb`` (B, d) every text;
    ``positives`` (b, B) bool, OR-ed with the shifted diagonal ``(i, row_offset + i)``.
    Returns the sum of the rows' pairwise terms divided by ``normalizer`` (default: b).
    So the row blocks of a batch split over ranks sum, times b / B, to :func:`sigmoid_loss`
    (the data-parallel trainer's per-rank term: local rows against all columns).
    b == 0 gives a zero with a gradient path through both inputs. Raises ValueError on
    shapes that do not fit.
    """
    b, n = image_rows.shape[0], text_emb.shape[0]
    if row_offset < 0 or row_offset + b > n:
        raise ValueError(f"rows [{row_offset}, {row_offset + b}) do not fit {n} texts")
    if b == 0:
        return (image_rows.sum() + text_emb.sum() + logit_scale.sum() + logit_bias.sum()) * 0
    logits = _acc(image_rows) @ _acc(text_emb).T * _acc(logit_scale).exp() + _acc(logit_bias)
    pos = torch.zeros((b, n), dtype=torch.bool, device=logits.device)
    rows = torch.arange(b, device=logits.device)
    pos[rows, rows + row_offset] = True
    if positives is not None:
        if positives.shape != (b, n):
            raise ValueError(f"positives must be ({b}, {n}), got {tuple(positives.shape)}")
        pos = pos | positives.to(device=logits.device, dtype=torch.bool)
    labels = pos.to(logits.dtype) * 2 - 1
    return -F.logsigmoid(labels * logits).sum() / (b if normalizer is None else normalizer)


def body_mask_from_pixels(
    pixel_values: Tensor, grid: tuple[int, int], threshold: float = 0.1
) -> Tensor:
    """(B, C, S, S) pixels normalized with mean 0.5 / std 0.5 -> (B, h, w) bool body mask.

    Rule: intensity = channel mean rescaled to [0, 1]; a pixel is padding when its intensity
    is <= ``PAD_EPS`` (letterbox padding is exactly 0, i.e. -1 normalized). Each pixel grid
    is average-pooled onto ``grid`` (adaptive pooling, so S need not be a multiple). A patch
    is body iff (a) fewer than half of its pixels are padding and (b) its mean intensity is
    > ``threshold`` x the brightest non-padding patch of that image (for min-max windowed
    radiographs this is ~ an absolute intensity of ``threshold``: air outside the patient is
    out, the dark lungs stay in). An image whose mask would be empty gets all-True.
    """
    h, w = grid
    intensity = _acc(pixel_values).detach().mean(dim=1, keepdim=True).add(1).mul(0.5)
    pad = (intensity <= PAD_EPS).to(intensity.dtype)
    mean = F.adaptive_avg_pool2d(intensity, (h, w))[:, 0]
    pad_frac = F.adaptive_avg_pool2d(pad, (h, w))[:, 0]
    not_pad = pad_frac < 0.5
    level = torch.where(not_pad, mean, torch.zeros_like(mean)).flatten(1).amax(dim=1)
    body = not_pad & (mean > threshold * level[:, None, None])
    empty = ~body.flatten(1).any(dim=1)
    return body | empty[:, None, None]


def _gaussian_smooth(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, h, w) with replicate borders; sigma in patches."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(x[:, None], (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    return y[:, 0]


@torch.no_grad()
def pseudo_masks_from_attention(
    attn: Tensor, body_mask: Tensor, percentile: float = 85.0, smooth_sigma: float = 1.0
) -> Tensor:
    """G2D pseudo masks: (B, h, w) attention + body mask -> (B, h, w) float {0, 1}.

    Smooth with a Gaussian (``smooth_sigma`` patches, separable conv, replicate borders),
    then keep patches strictly above the ``percentile``-th percentile (linear interpolation,
    ``torch.nanquantile``) of the smoothed values inside the body mask; zero outside it.
    So ~(100 - percentile)% of body patches are 1; a flat map gives an empty mask.
    """
    if attn.shape != body_mask.shape or attn.dim() != 3:
        raise ValueError(f"attn {tuple(attn.shape)} and body_mask must both be (B, h, w)")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    out_dtype = attn.dtype if attn.is_floating_point() else torch.float32
    x = attn.detach().to(torch.float64 if attn.dtype == torch.float64 else torch.float32)
    body = body_mask.to(device=x.device, dtype=torch.bool)
    smooth = _gaussian_smooth(x, smooth_sigma)
    inside = torch.where(body, smooth, torch.full_like(smooth, float("nan"))).flatten(1)
    thr = torch.nanquantile(inside, percentile / 100.0, dim=1)  # nan for an empty body
    mask = (smooth > thr[:, None, None]) & body
    return mask.to(out_dtype)


def dice_bce_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """Mean BCE-with-logits + mean over the batch of ``1 - (2|P.T| + eps) / (|P| + |T| + eps)``.

    ``P = sigmoid(logits)`` (soft Dice); sums are per image over (h, w).
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} vs target {tuple(target.shape)}")
    z = _acc(logits)
    t = target.to(dtype=z.dtype, device=z.device)
    bce = F.binary_cross_entropy_with_logits(z, t)
    p = torch.sigmoid(z).flatten(1)
    t = t.flatten(1)
    dice = (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    return bce + (1 - dice).mean()


def region_contrast_loss(
    region_emb: Tensor,
    phrase_emb: Tensor,
    logit_scale: Tensor,
    logit_bias: Tensor,
    same_phrase: Tensor | None = None,
    row_offset: int = 0,
    normalizer: float | None = None,
) -> Tensor:
    """ALC-ITR-style sigmoid loss of M box-pooled regions vs their M phrases (see module doc).

    ``same_phrase`` (M, M) bool marks identical phrases (build it with :func:`same_key_mask`);
    default: diagonal. Normalized by M. M == 0 gives a zero with a gradient path.
    ``row_offset`` / ``normalizer``: the regions are rows of a larger problem whose phrases
    are all of ``phrase_emb`` (``same_phrase`` then (m, M)), as :func:`sigmoid_loss_rows`.
    """
    if region_emb.shape[0] == 0:
        return (region_emb.sum() + phrase_emb.sum() + logit_scale.sum() + logit_bias.sum()) * 0
    if row_offset == 0 and normalizer is None and phrase_emb.shape[0] != region_emb.shape[0]:
        raise ValueError(f"{region_emb.shape[0]} regions, {phrase_emb.shape[0]} phrases")
    return sigmoid_loss_rows(region_emb, phrase_emb, logit_scale, logit_bias, same_phrase,
                             row_offset, normalizer)  # fmt: skip


def lm_loss(
    logits: Tensor, labels: Tensor, ignore_index: int = -100, normalizer: float | None = None
) -> Tensor:
    """Causal LM cross entropy: logits[:, t] predicts labels[:, t + 1]; mean over supervised
    tokens, 0 (with a gradient path) when there are none. No host sync.

    ``normalizer`` replaces the supervised-token count as the divisor (a data-parallel rank
    divides its sum by the global batch's count over the number of ranks)."""
    z = _acc(logits[:, :-1]).reshape(-1, logits.shape[-1])
    y = labels[:, 1:].reshape(-1).to(device=z.device, dtype=torch.long)
    total = F.cross_entropy(z, y, ignore_index=ignore_index, reduction="sum")
    if normalizer is not None:
        return total / normalizer
    count = (y != ignore_index).sum().clamp(min=1)
    return total / count  # a sum over zero tokens is 0 and keeps its grad_fn


def format_box_answer(boxes: Sequence[tuple[float, float, float, float]]) -> str:
    """Boxes in [0, 1] of the padded square -> ``[[x1,y1,x2,y2],...]`` with integers 0..1000.

    Each coordinate is ``round(v * 1000)`` (Python round: half to even), clamped to 0..1000;
    swapped corners are reordered; a zero-width/height box is widened by one unit (towards
    1000 unless already there). Sorted by (x1, y1, x2, y2); no spaces; no box -> ``[]``.
    The rule is defined once, by the ``lofi`` box codec (:func:`format_box_ints`).
    """
    return format_box_ints(boxes)


_OUTER_RE = re.compile(r"\[\s*(\[[^\[\]]*\](?:\s*,\s*\[[^\[\]]*\])*)\s*\]")
_INNER_RE = re.compile(r"\[([^\[\]]*)\]")
_INT_RE = re.compile(r"[+-]?\d+")


def parse_box_answer(text: str) -> list[tuple[int, int, int, int]]:
    """The boxes of the first ``[[...],...]`` list in ``text`` (spaces and prose tolerated).

    Inner lists that are not exactly four integers are skipped. Purely syntactic: the order
    and range of the coordinates are not checked (the caller clamps / validates).
    """
    m = _OUTER_RE.search(text)
    if m is None:
        return []
    out: list[tuple[int, int, int, int]] = []
    for inner in _INNER_RE.finditer(m.group(1)):
        parts = [p.strip() for p in inner.group(1).split(",")]
        if len(parts) == 4 and all(_INT_RE.fullmatch(p) for p in parts):
            a, b, c, d = (int(p) for p in parts)
            out.append((a, b, c, d))
    return out
