"""How sure a proposal holds its best match: the score regions are ranked by.

Raw cosine similarity ranks badly across boxes: some catalog photos (plain,
pale products on white) are close to many crops of any room, and big boxes
score higher than small ones whatever they show. A box's best match counts
for more when it stands out from the box's next matches (distinct) and when
the same product is not also the best match of most other boxes of the photo
(confident for *this* spot, not a photo-wide "hub").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from shoplens.indexer.catalog.types import Hit


def region_scores(
    hits: Sequence[Sequence[Hit]], probe_k: int, margin_weight: float, share_weight: float
) -> list[float]:
    """One score per proposal from its hits (best first); -inf for a proposal without hits.

    ``s1 + margin_weight * (s1 - mean(s2..s_probe_k)) - share_weight * share``, where
    ``share`` is the fraction of the photo's proposals whose best match is the same
    product. On the tuning rooms the margin mattered most, the share a little
    (weights from a small grid there, ``benchmarks/look.py``).
    """
    tops = Counter(h[0].product.product_id for h in hits if h)
    n = max(1, sum(tops.values()))
    out: list[float] = []
    for row in hits:
        if not row:
            out.append(float("-inf"))
            continue
        scores = [h.score for h in row[:probe_k]]
        rest = scores[1:] or scores
        margin = scores[0] - sum(rest) / len(rest)
        share = tops[row[0].product.product_id] / n
        out.append(scores[0] + margin_weight * margin - share_weight * share)
    return out
