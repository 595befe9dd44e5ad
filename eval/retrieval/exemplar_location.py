"""Do a selector's exemplars demonstrate the query's location? A retrieval-side check, no VLM.

For each grounding instance of a split, every arm retrieves k exemplars the way the agent
does (same retriever, leakage guard, selector and options) and the finding each one
demonstrates is chosen as the prompt chooses it (:func:`ricl.prompting.demos.pick_demo`).
Per instance: the IoU of that finding's box hull with the query's gold hull, averaged
over the k exemplars (``mean IoU``) and its best (``best of k``); ``same label``: the
share of demonstrated findings sharing a gold label with the query. Means over instances.
The ``location-oracle`` arm (the gold hull as the query box: reads the answer) is the
upper bound that selectors are measured against. Each query image is embedded once and
the embedding reused by every arm (the oracle embeds its region), so the last column is
the retrieval's own time: milliseconds per query, mean over the instances.

    python eval/retrieval/exemplar_location.py --root data/sites/X \\
        --index data/sites/idx-X-phantom-lofi --split validation --k 3 \\
        --arm fused --arm 'fused-pool1024=fused:{"pool": 1024}'

An arm is ``NAME`` (a selector name) or ``NAME=SELECTOR[:JSON options]``; no ``--arm``
gives random, fine-grained, fused and location-oracle.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_ARMS = ["random", "fine-grained", "fused", "location-oracle=location"]


def parse_arm(text: str) -> tuple[str, str, dict]:
    """``NAME`` or ``NAME=SELECTOR[:JSON]`` -> (name, selector, options)."""
    name, _, rest = text.partition("=")
    selector, _, opts = (rest or name).partition(":")
    try:
        options = json.loads(opts) if opts else {}
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --arm {text!r}: options are not JSON ({exc})") from None
    if not isinstance(options, dict):
        raise SystemExit(f"error: --arm {text!r}: options must be a JSON object")
    return name, selector, options


def instance_scores(exemplars: list, inst: object) -> tuple[float, float, float]:
    """(mean IoU, best IoU, same-label share) of the demonstrated findings vs the gold."""
    from ricl.boxes.geometry import box_iou, hull
    from ricl.prompting.demos import pick_demo

    gold = hull(inst.boxes)  # type: ignore[attr-defined]
    labels = set(inst.labels)  # type: ignore[attr-defined]
    ious, same = [], []
    for e in exemplars:
        f = pick_demo(e, inst.phrase).finding  # type: ignore[attr-defined]
        ious.append(box_iou(hull(f.boxes), gold) if f.boxes else 0.0)
        same.append(float(bool(labels & set(f.labels))))
    if not ious:
        return 0.0, 0.0, 0.0
    return float(np.mean(ious)), float(max(ious)), float(np.mean(same))


def main(argv: list[str] | None = None) -> int:
    from ricl.boxes.geometry import hull
    from ricl.data.spec import SplitSpec
    from ricl.retrieval.retriever import Query, Retriever

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="phantom", help="reader name (phantom, padchest-gr, ...)")
    ap.add_argument("--root", required=True, help="the release's folder")
    ap.add_argument("--index", required=True, help="ricl index directory")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="first N instances only")
    ap.add_argument("--arm", action="append", default=None)
    args = ap.parse_args(argv)

    arms = [parse_arm(a) for a in (args.arm or DEFAULT_ARMS)]
    spec = SplitSpec(name=args.dataset, root=args.root, split=args.split, limit=args.limit)
    ds = spec.open()
    insts = [i for i in spec.instances(ds) if i.boxes]
    retriever = Retriever(args.index)
    images = [ds.images_root / inst.image_path for inst in insts]
    vectors = [retriever.embed(Query(image=path), "image") for path in images]
    print(f"{len(insts)} instances with boxes ({args.root}, {args.split}), k = {args.k}\n")
    print("| arm | mean IoU | best of k | same label | ms / query |")
    print("|---|---:|---:|---:|---:|")
    for name, selector, options in arms:
        rows, seconds = [], 0.0
        oracle = selector == "location"  # the gold hull as the query box
        for inst, path, vec in zip(insts, images, vectors, strict=True):
            q = Query(image=path, embedding=None if oracle else vec, phrase=inst.phrase,
                      study_id=inst.study_id, patient_id=inst.patient_id,
                      box=hull(inst.boxes) if oracle else None)  # fmt: skip
            t0 = time.perf_counter()
            found = retriever.retrieve(q, args.k, selector, options=options or None)
            seconds += time.perf_counter() - t0
            rows.append(instance_scores(found, inst))
        m = np.mean(rows, axis=0)
        ms = 1e3 * seconds / max(len(insts), 1)
        print(f"| {name} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {ms:.1f} |")
    return 0


def _cli(argv: list[str] | None = None) -> int:
    from ricl.errors import RiclError

    try:
        return main(argv)
    except (RiclError, ValueError) as exc:  # bad dataset, split, index or arm: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(_cli())
