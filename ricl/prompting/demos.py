"""Which finding of a retrieved exemplar demonstrates the query phrase.

An exemplar image usually holds several positive findings. The demonstration shows ONE
phrase-box pair per exemplar (others optionally, as context): the finding whose phrase is
closest to the query phrase (word-set Jaccard over content words), preferring findings
that have boxes; for a ``location`` retrieval, the finding of the region that matched.
The same choice feeds the ``knn`` box-transfer backend, so both read exemplars alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from ricl.retrieval.exemplars import Exemplar, ExemplarFinding
from ricl.retrieval.phrases import phrase_similarity

__all__ = ["Demo", "phrase_similarity", "pick_demo"]


@dataclass(frozen=True, slots=True)
class Demo:
    """One exemplar as demonstrated: its chosen finding, the others, and the similarity."""

    exemplar: Exemplar
    finding: ExemplarFinding
    others: tuple[ExemplarFinding, ...]
    similarity: float


def pick_demo(exemplar: Exemplar, phrase: str) -> Demo:
    """The demonstration of ``exemplar`` for the query ``phrase``.

    Raises ValueError for an exemplar without findings (the index never stores one).
    """
    if not exemplar.findings:
        raise ValueError(f"exemplar {exemplar.exemplar_id} ({exemplar.study_id}) has no findings")
    if exemplar.matched_region is not None:
        chosen = exemplar.findings[exemplar.matched_region[0]]
    else:
        chosen = max(
            exemplar.findings,
            key=lambda f: (bool(f.boxes), phrase_similarity(phrase, f.phrase), -f.index),
        )
    others = tuple(f for f in exemplar.findings if f is not chosen)
    return Demo(exemplar, chosen, others, phrase_similarity(phrase, chosen.phrase))
