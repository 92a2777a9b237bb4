"""Hashing baselines of the DAH paper's retrieval tables as scikit-learn estimators: ``fit(X)``
then ``transform(X)`` gives packed uint8 codes (see :mod:`dahash.codes`). All are unsupervised."""

from .ba import BinaryAutoencoderHasher
from .bdnn import BDNNHasher
from .itq import ITQHasher
from .kmh import KMeansHasher
from .lsh import LSHHasher

__all__ = ["BDNNHasher", "BinaryAutoencoderHasher", "ITQHasher", "KMeansHasher", "LSHHasher"]
