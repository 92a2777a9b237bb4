"""Hashing baselines of the DAH paper's retrieval tables as scikit-learn estimators: ``fit(X)``
then ``transform(X)`` gives packed uint8 codes (see :mod:`dahash.codes`). LSH, ITQ, K-means
hashing, BA and BDNN are unsupervised; DPSH (the paper's NoDA and SuH) is fitted with labels."""

from dahash.hashing.ba import BinaryAutoencoderHasher
from dahash.hashing.bdnn import BDNNHasher
from dahash.hashing.dpsh import DPSHHasher
from dahash.hashing.itq import ITQHasher
from dahash.hashing.kmh import KMeansHasher
from dahash.hashing.lsh import LSHHasher

__all__ = ["BDNNHasher", "BinaryAutoencoderHasher", "DPSHHasher", "ITQHasher", "KMeansHasher", "LSHHasher"]
