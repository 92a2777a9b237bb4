"""Hashing baselines of the DAH paper's retrieval tables as scikit-learn estimators: ``fit(X)``
then ``transform(X)`` gives packed uint8 codes (see :mod:`dahash.codes`). LSH, ITQ, K-means
hashing, BA and BDNN are unsupervised; DPSH (the paper's NoDA and SuH) is fitted with labels."""

from .ba import BinaryAutoencoderHasher
from .bdnn import BDNNHasher
from .dpsh import DPSHHasher
from .itq import ITQHasher
from .kmh import KMeansHasher
from .lsh import LSHHasher

__all__ = ["BDNNHasher", "BinaryAutoencoderHasher", "DPSHHasher", "ITQHasher", "KMeansHasher", "LSHHasher"]
