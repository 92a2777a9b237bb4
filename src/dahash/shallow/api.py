"""One-call shallow baselines: adapt fixed features, classify the target (DAH paper, Tables 2-3;
SA and OT mapping added as further references).

:func:`fit_predict_shallow` is what ``dahash reproduce`` calls: method name, source features and
labels, target features in; predicted target labels out.  It builds the skada pipeline of
:func:`make_shallow_pipeline` (adapter, then classifier), so the same objects also work with
skada's scorers and model selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skada import make_da_pipeline
from skada.base import BaseAdapter
from sklearn import config_context
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from dahash.errors import ConfigError, DataError
from dahash.shallow.coral import CORALAdapter
from dahash.shallow.gfk import GFKAdapter
from dahash.shallow.jda import JDAAdapter
from dahash.shallow.ot_mapping import OTAdapter
from dahash.shallow.sa import SAAdapter
from dahash.shallow.tca import TCAAdapter
from dahash.validation import check_choice, check_int

#: Method names accepted by :func:`fit_predict_shallow`; "none" is the no-adaptation baseline.
ADAPTERS: dict[str, type[BaseAdapter]] = {
    "gfk": GFKAdapter, "tca": TCAAdapter, "coral": CORALAdapter, "jda": JDAAdapter,
    "sa": SAAdapter, "ot": OTAdapter}
METHODS: tuple[str, ...] = ("none", *ADAPTERS)
CLASSIFIERS: tuple[str, ...] = ("1nn", "svm", "logreg")
PREPROCESSING: tuple[str, ...] = ("zscore", "l2", "none")

# skada marks target rows by a negative domain label and unlabelled target rows by y = -1.
SOURCE_DOMAIN, TARGET_DOMAIN, UNLABELLED = 1, -2, -1


def make_classifier(name: str = "1nn", *, seed: int = 0) -> ClassifierMixin:
    """The classifier on top: 1-NN (the GFK/TCA/JDA papers' choice), linear SVM, or logistic regression."""
    check_choice("classifier", name, CLASSIFIERS)
    if name == "1nn":
        return KNeighborsClassifier(n_neighbors=1)
    if name == "svm":
        # fc7-sized features need more LIBLINEAR iterations than the default 1,000 to converge.
        return LinearSVC(C=1.0, max_iter=20_000, random_state=seed)
    return LogisticRegression(max_iter=2_000, random_state=seed)


def make_adapter(method: str, **params: Any) -> BaseAdapter | None:
    """The adapter for ``method`` with ``params`` (None for "none"); unknown params raise ConfigError."""
    check_choice("method", method, METHODS)
    if method == "none":
        if params:
            raise ConfigError(f"method 'none' takes no parameters, got {sorted(params)}")
        return None
    cls = ADAPTERS[method]
    allowed = sorted(cls().get_params())
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for method {method!r}; "
                          f"allowed: {allowed}")
    return cls(**params)


def make_shallow_pipeline(method: str, *, classifier: str = "1nn", seed: int = 0,
                          **params: Any) -> Pipeline:
    """skada pipeline ``adapter -> classifier`` (fit with ``sample_domain``, target ``y = -1``).

    For "jda" the pseudo-labeller defaults to the same kind of classifier as the final one, as in
    the paper (1-NN for both).
    """
    seed = check_int("seed", seed, low=0)
    clf = make_classifier(classifier, seed=seed)
    if method == "jda" and "base_estimator" not in params:
        params["base_estimator"] = make_classifier(classifier, seed=seed)
    adapter = make_adapter(method, **params)
    return make_da_pipeline(clf) if adapter is None else make_da_pipeline(adapter, clf)


def _as_features(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise DataError(f"{name} must be a 2-D array with at least 2 rows, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return a


def preprocess_domains(Xs: np.ndarray, Xt: np.ndarray,
                       preprocess: str = "zscore") -> tuple[np.ndarray, np.ndarray]:
    """Per-domain feature scaling applied before every method, the no-adaptation one included.

    "zscore" standardises each feature within each domain (population std; constant features
    become 0), as every method's authors do in their Office-Caltech code (``zscore(fts,1)`` in
    GFK's ``Ex_GFK.m``, JDA's ``run_surf.m``, SA's ``NormalizeData``, CORAL's ``Ex_CORAL.m``); it
    also puts CORAL's ``+ I`` on the scale it was designed for.  "l2" scales each row to unit norm.
    TCA and JDA add their own per-sample L2 scaling on top (their ``normalize`` parameter).
    """
    check_choice("preprocess", preprocess, PREPROCESSING)
    if preprocess == "none":
        return Xs, Xt
    if preprocess == "l2":
        return tuple(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
                     for x in (Xs, Xt))
    out = []
    for x in (Xs, Xt):
        std = x.std(axis=0)
        out.append((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0))
    return out[0], out[1]


def fit_predict_shallow(method: str, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, *,
                        classifier: str = "1nn", preprocess: str = "zscore", seed: int = 0,
                        **params: Any) -> np.ndarray:
    """Predicted labels of the target rows ``Xt`` after adapting with ``method``.

    ``method`` is one of "gfk", "tca", "coral", "jda", "sa", "ot" (or "none"); ``params`` go to the
    adapter (e.g. ``n_components=``, ``mu=``, ``lam=``, ``kernel=``, ``reg=``, ``reg_e=``); ``classifier`` is "1nn"
    (default), "svm" (LinearSVC) or "logreg"; ``seed`` seeds the SVM / logistic regression (the
    adapters are deterministic).  Labels may be any sortable values; the result has ``ys``'s dtype.
    """
    check_choice("method", method, METHODS)
    Xs, Xt = _as_features("Xs", Xs), _as_features("Xt", Xt)
    if Xs.shape[1] != Xt.shape[1]:
        raise DataError(f"Xs has {Xs.shape[1]} features but Xt has {Xt.shape[1]}")
    ys = np.asarray(ys)
    if ys.shape != (Xs.shape[0],):
        raise DataError(f"ys must hold one label per row of Xs ({Xs.shape[0]}), got shape {ys.shape}")
    classes, codes = np.unique(ys, return_inverse=True)
    pipe = make_shallow_pipeline(method, classifier=classifier, seed=seed, **params)
    Xs, Xt = preprocess_domains(Xs, Xt, preprocess)

    X = np.concatenate([Xs, Xt])
    y = np.concatenate([codes, np.full(Xt.shape[0], UNLABELLED)])
    sample_domain = np.concatenate([np.full(Xs.shape[0], SOURCE_DOMAIN),
                                    np.full(Xt.shape[0], TARGET_DOMAIN)])
    # scikit-learn's settings are per thread: skada's routing switch, made on import, is not on in a
    # thread that did not import it (a Dask worker's task threads).
    with config_context(enable_metadata_routing=True):
        pipe.fit(X, y, sample_domain=sample_domain)
        predicted = pipe.predict(Xt, sample_domain=np.full(Xt.shape[0], TARGET_DOMAIN))
    return classes[np.asarray(predicted, dtype=np.intp)]
