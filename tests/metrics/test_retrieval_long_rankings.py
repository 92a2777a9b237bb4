"""Long rankings (5,000 items: several of the counting kernels' 1,024-item tiles) against the definition."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.codes import pack_codes
from dahash.metrics import average_precisions, hamming_ranking, precision_at_k


def _reference_ap(q, qy, db, dby, top_k=None):
    """AP straight from the definition: stable ranking, cumulative hits, precision at relevant ranks."""
    order, _ = hamming_ranking(q, db, top_k)
    rel = dby[order] == qy[:, None]
    hits = np.cumsum(rel, axis=1)
    prec = hits / np.arange(1, rel.shape[1] + 1)
    n = rel.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (prec * rel).sum(1) / n, np.nan)


@pytest.mark.parametrize("bits, top_k", [(16, None), (64, None), (64, 100), (300, None)])
def test_long_rankings_match_the_definition(bits: int, top_k: int | None) -> None:
    rng = np.random.default_rng(bits)
    # Few bits and few classes: many ties, so the stable tie order matters.
    q = pack_codes(rng.standard_normal((7, bits)))
    db = pack_codes(rng.standard_normal((5000, bits)))
    qy, dby = rng.integers(0, 5, 7), rng.integers(0, 5, 5000)
    np.testing.assert_allclose(average_precisions(q, qy, db, dby, top_k=top_k, chunk_size=3),
                               _reference_ap(q, qy, db, dby, top_k), rtol=1e-12)
    order, _ = hamming_ranking(q, db, 100)
    expected = (dby[order] == qy[:, None]).mean(1).mean()
    assert precision_at_k(q, qy, db, dby, 100, chunk_size=3) == pytest.approx(expected)
