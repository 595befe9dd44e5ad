"""Where does the location-aware captioning term put what it learns?

The ablation (eval/results/encoder_ablation.md) found ``lofi`` equal to ``sigmoid+caption``
in location-aware precision@5 of the GLOBAL embedding. The hypothesis: the location term
trains the patch tokens that the decoder reads, while the global embedding is an attention
pooling trained by the sigmoid loss alone. This script tests it on the ablation's own
checkpoints, without training: it scores ``loc_P@5`` / ``label_P@5`` (same scorer, same
queries and gallery, same-patient exclusion) with three descriptors of each image:

- ``global``: the retrieval embedding (reproduces the ablation table);
- ``patch-mean``: the patch tokens averaged over the grid (no layout);
- ``patch-grid``: the patch tokens average-pooled to a ``--cells`` x ``--cells`` grid and
  concatenated (layout kept): what a retriever reading the decoder's inputs would see.

The patch descriptors are centred on the gallery mean and L2-normalised (the global
embedding is used as retrieval uses it). Prints a markdown table
(mean ± std over seeds).

    python eval/encoder/location_probe.py --root data/phantom8k \\
        --runs eval/runs/encoder_ablation_phantom --arms sigmoid sigmoid+caption lofi
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def descriptors(enc, cells: int) -> dict[str, np.ndarray]:
    """``enc``: an ImageEncoding -> ``{name: (n, d)}`` un-normalised descriptors."""
    n, _, c = enc.patch_tokens.shape
    h, w = enc.grid
    grid = enc.patch_tokens.reshape(n, h, w, c)
    pooled = grid.reshape(n, cells, h // cells, cells, w // cells, c).mean(axis=(2, 4))
    return {
        "global": enc.embeddings,
        "patch-mean": grid.mean(axis=(1, 2)),
        "patch-grid": pooled.reshape(n, -1),
    }


def _normalise(q: np.ndarray, g: np.ndarray, centre: bool) -> tuple[np.ndarray, np.ndarray]:
    mu = g.mean(axis=0, keepdims=True) if centre else 0.0
    q, g = q - mu, g - mu
    return (q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-8),
            g / np.linalg.norm(g, axis=1, keepdims=True).clip(1e-8))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", default="data/phantom8k")
    ap.add_argument("--runs", default="eval/runs/encoder_ablation_phantom")
    ap.add_argument("--arms", nargs="+", default=["sigmoid", "sigmoid+caption", "lofi"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--queries", type=int, default=600, help="first N test studies")
    ap.add_argument("--cells", type=int, default=4, help="patch-grid pooling (grid / cells)")
    args = ap.parse_args(argv)

    from ricl.data import load_dataset
    from ricl.encoders import load as load_encoder
    from ricl.evaluation.retrieval import (
        location_precision_at_k,
        same_patient_exclusion,
        study_keys,
    )

    ds = load_dataset("phantom", args.root, read_image_sizes=False)
    gallery = ds.studies_of("train")
    queries = ds.studies_of("test")[: args.queries]
    exclude = same_patient_exclusion([s.patient_id for s in queries],
                                     [s.patient_id for s in gallery])  # fmt: skip
    gk, qk = [study_keys(s) for s in gallery], [study_keys(s) for s in queries]
    g_paths, q_paths = [ds.image_file(s) for s in gallery], [ds.image_file(s) for s in queries]

    scores: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for arm in args.arms:
        for seed in args.seeds:
            enc = load_encoder(str(Path(args.runs) / arm / f"seed{seed}" / "model"))
            g = descriptors(enc.encode_images(g_paths, batch_size=128), args.cells)
            q = descriptors(enc.encode_images(q_paths, batch_size=128), args.cells)
            for name in g:
                qn, gn = _normalise(q[name], g[name], centre=name != "global")
                m = location_precision_at_k(qn, gn, qk, gk, ks=(5,), exclude=exclude)
                scores.setdefault((arm, name), []).append((m["loc_P@5"], m["label_P@5"]))
            print(f"{arm} seed {seed}: " + ", ".join(
                f"{n} {scores[(arm, n)][-1][0]:.3f}" for n in g), file=sys.stderr)  # fmt: skip

    def fmt(v: list[float]) -> str:
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    print("| arm | descriptor | seeds | loc_P@5 | label_P@5 |\n|---|---|---:|---:|---:|")
    for (arm, name), rows in scores.items():
        loc, lab = [r[0] for r in rows], [r[1] for r in rows]
        print(f"| {arm} | {name} | {len(rows)} | {fmt(loc)} | {fmt(lab)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
