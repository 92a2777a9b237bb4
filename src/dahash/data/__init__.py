"""Data in: feature files, normalisation, the DAH batch sampler and the digits of the demo."""

from dahash.data.features import FeatureSet, align_domains, load_features, save_features
from dahash.data.normalize import FeatureNormalizer
from dahash.data.sampler import Batch, KPerClassSampler

__all__ = ["Batch", "FeatureNormalizer", "FeatureSet", "KPerClassSampler", "align_domains", "load_features",
           "save_features"]
