"""Shallow domain-adaptation baselines on fixed features: GFK, TCA, CORAL, JDA (DAH paper, Tables 2-3),
Subspace Alignment and optimal-transport mapping.  Sources, settings and the comparison with skada:
``docs/baselines.md``.

Each method is a :class:`skada.base.BaseAdapter`, so it composes with a classifier in
``skada.make_da_pipeline(adapter, classifier)`` (fit with ``sample_domain``: >= 0 source, < 0
target; target labels -1).  :func:`fit_predict_shallow` wraps all of it in one call.

Importing this package imports skada, which switches on scikit-learn's metadata routing
(``sklearn.set_config(enable_metadata_routing=True)``) for the whole process.
"""

from dahash.shallow.api import (
                  CLASSIFIERS,
                  METHODS,
                  PREPROCESSING,
                  fit_predict_shallow,
                  make_adapter,
                  make_classifier,
                  make_shallow_pipeline,
                  preprocess_domains,
)
from dahash.shallow.coral import CORALAdapter
from dahash.shallow.gfk import GFKAdapter
from dahash.shallow.jda import JDAAdapter
from dahash.shallow.ot_mapping import OTAdapter
from dahash.shallow.sa import SAAdapter
from dahash.shallow.tca import TCAAdapter

__all__ = ["CLASSIFIERS", "CORALAdapter", "GFKAdapter", "JDAAdapter", "METHODS", "OTAdapter",
           "PREPROCESSING", "SAAdapter", "TCAAdapter", "fit_predict_shallow", "make_adapter",
           "make_classifier", "make_shallow_pipeline", "preprocess_domains"]
