"""The copy test: does a grounding VLM read its demonstrations?

Each of the first ``--n`` training instances (with boxes) of a release is asked twice:
zero-shot, and with ONE exemplar that is its own study (``allow_same_patient``,
fine-grained selector: the query image is the exemplar's own image, similarity 1, so the
own study comes back first; the demonstrated finding is the one whose phrase matches the
query's, i.e. the query's own finding): the demonstration then holds the identical image,
phrase and gold answer. A model that reads demonstrations copies and scores near 1; one
that ignores them scores as zero-shot. Prints a markdown table (union IoU, mean over the
instances) and how many instances were really shown their own finding (same study, same
phrase, same boxes). (Until 2026-12 the own-study arm used the location selector with the
gold hull, which missed the own study for some bilateral findings: 27 / 30.)

    python eval/vlm/copy_test.py --root data/sites/A --index data/sites/idx-A-phantom-lofi \\
        --model stage-1=eval/runs/vlm_phantom_sites/model --model gpu=eval/runs/...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _is_own(summary: dict, inst: object) -> bool:
    """Whether a demonstration is the query's own finding: same study, phrase and boxes."""
    boxes = [b.to_list() for b in inst.boxes]  # type: ignore[attr-defined]
    return (
        summary["study_id"] == inst.study_id  # type: ignore[attr-defined]
        and summary["phrase"] == inst.phrase  # type: ignore[attr-defined]
        and len(summary["boxes"]) == len(boxes)
        and bool(np.allclose(summary["boxes"], boxes, atol=1e-4))
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", default="data/sites/A")
    ap.add_argument("--index", default="data/sites/idx-A-phantom-lofi")
    ap.add_argument("--model", action="append", required=True, help="NAME=DIR (repeatable)")
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args(argv)

    from ricl.agent import GroundingAgent
    from ricl.agent_config import AgentConfig
    from ricl.boxes.geometry import union_iou
    from ricl.data import load_dataset
    from ricl.vlm.hf import HFBackend

    ds = load_dataset("phantom", args.root, read_image_sizes=False)
    queries = [i for i in ds.select("train") if i.boxes][: args.n]

    arms = {
        "zero-shot": {"strategy": "zero-shot", "k": 0},
        "own study shown": {"k": 1, "selector": "fine-grained", "allow_same_patient": True},
    }
    print("| model | zero-shot | own study shown | own finding shown |\n|---|---:|---:|---:|")
    for spec in args.model:
        name, _, path = spec.partition("=")
        backend = HFBackend(path, max_tokens=64)
        row = []
        for options in arms.values():
            agent = GroundingAgent(
                AgentConfig(index=args.index, codec="qwen2vl", max_image_side=112, **options),
                backend=backend,
            )
            ious, own = [], 0
            for inst in queries:
                r = agent.ground(ds.images_root / inst.image_path, inst.phrase,
                                 study_id=inst.study_id, patient_id=inst.patient_id)  # fmt: skip
                ious.append(union_iou(r.boxes, inst.boxes))
                own += bool(r.exemplars) and _is_own(r.exemplars[0], inst)
            row.append((float(np.mean(ious)), own))
        print(f"| {name} | {row[0][0]:.3f} | {row[1][0]:.3f} | {row[1][1]} / {len(queries)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
