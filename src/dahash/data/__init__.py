"""Data in: feature files, normalisation and the DAH batch sampler."""

from .features import FeatureSet, align_domains, load_features, save_features
from .normalize import FeatureNormalizer
from .sampler import Batch, KPerClassSampler

__all__ = ["Batch", "FeatureNormalizer", "FeatureSet", "KPerClassSampler", "align_domains", "load_features",
           "save_features"]
