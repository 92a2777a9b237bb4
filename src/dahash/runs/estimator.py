"""DAH as a scikit-learn / skada estimator: ``fit(X, y, sample_domain=...)`` on arrays, through the trainer ``dahash train`` uses.

skada's convention (Gnassounou et al., skada 0.6): one ``X`` holds every domain's rows,
``sample_domain`` is positive for source rows and negative for target rows, and target labels
are masked as ``y = -1``. :class:`DAH` reads ``y`` of source rows only, so real target labels
passed by mistake are never used.

Model selection with skada (``cross_validate``, ``GridSearchCV`` and the label-free scorers
``ImportanceWeightedScorer``, ``DeepEmbeddedValidation``, ``SoftNeighborhoodDensity``,
``PredictionEntropyScorer``) routes ``sample_domain`` through scikit-learn's metadata routing,
which importing skada switches on (``sklearn.set_config(enable_metadata_routing=True)``; this
module imports skada). Pass it as ``params={"sample_domain": sample_domain}``::

    import skada  # enables metadata routing
    from sklearn.model_selection import cross_validate
    from skada.metrics import PredictionEntropyScorer
    from skada.model_selection import SourceTargetShuffleSplit

    cross_validate(DAH(epochs=50), X, y, params={"sample_domain": sample_domain},
                   cv=SourceTargetShuffleSplit(), scoring=PredictionEntropyScorer())

``fit`` requests ``sample_domain``; ``predict``, ``predict_proba``, ``predict_log_proba`` and
``score`` request ``sample_domain`` and ``allow_source`` (both accepted and unused: one network
serves both domains); ``score`` also requests ``sample_weight``, which
``ImportanceWeightedScorer`` needs. ``DeepEmbeddedValidation`` reads ``module_.layer_name``
and ``predict_features`` (fc7) and indexes class probabilities by the label, so give it
labels ``0..C-1`` (:func:`dahash.runs.selection.select_setting` encodes them so).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from skada.base import DAEstimator
from sklearn.base import ClassifierMixin, clone
from sklearn.utils import TransformerTags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_array, check_is_fitted

from dahash.codes import pack_codes
from dahash.cores import free_cores
from dahash.data.features import FeatureSet
from dahash.data.normalize import FeatureNormalizer
from dahash.errors import ConfigError, DataError, one_line
from dahash.losses.entropy import class_log_probabilities
from dahash.models import ClassifierHead
from dahash.models.predict import class_probabilities, select_bank
from dahash.models.predict import encode as head_outputs
from dahash.runs.selection import CRITERIA, Selection, select_setting
from dahash.selection_grids import AUTO, GAMMA_GRIDS, SCHEDULE_MODES, VAL_FRACTION, auto_grid, auto_schedule
from dahash.training.config import TrainConfig
from dahash.training.methods import DEEP_METHODS, method_config
from dahash.training.trainer import Domains, train_model
from dahash.validation import check_choice

__all__ = ["DAH", "Bank", "EXPECTED_FAILED_CHECKS", "INPUT_SETTINGS", "PARAMETERS"]

#: TrainConfig fields that are explicit parameters of :class:`DAH` (None: the method's value).
PARAMETERS: tuple[str, ...] = ("bits", "hidden", "k", "epochs", "lr_start", "lr_end", "gamma", "eta", "beta",
                               "like_weight", "inner_product_scale", "feature_norm", "mmd_layers", "mmd_reduction",
                               "mmd_estimator", "reference_batch", "entropy_reduction", "bank_per_class", "seed",
                               "num_threads", "hidden_bn", "hidden_dropout")
# Settings that name data or a run folder: fit takes arrays, and ``out`` is a parameter of its own.
_NOT_EXTRA: tuple[str, ...] = ("source_features", "target_features", "data_root", "source", "target", "finetune",
                               "out")
#: Settings of data, files and run folders, meaningless for arrays: DAH.from_config leaves them out.
INPUT_SETTINGS: tuple[str, ...] = (*_NOT_EXTRA, "x_key", "y_key", "backbone", "weights", "augment", "cache_dir",
                                "num_workers", "extract_batch_size")
SOURCE_DOMAIN, TARGET_DOMAIN, MASKED = 1, -2, -1  # skada's default domain labels and masked target label


#: scikit-learn's ``check_estimator`` checks DAH fails by design, and why: each fits on labeled rows only,
#: and a domain-adaptation estimator needs unlabeled target rows (sample_domain < 0, or y == -1) beside
#: them. Every other check passes (tests/runs/test_estimator.py runs them all).
NEEDS_TARGET = "fit needs unlabeled target rows (sample_domain < 0 or y == -1); the check gives labeled rows only"
EXPECTED_FAILED_CHECKS: dict[str, str] = {name: NEEDS_TARGET for name in (
    "check_estimators_overwrite_params", "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit",
    "check_estimators_dtypes", "check_dtype_object", "check_pipeline_consistency", "check_estimators_nan_inf",
    "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_classifier_data_not_an_array",
    "check_classifiers_one_label", "check_classifiers_classes", "check_classifiers_train", "check_supervised_y_2d",
    "check_transformer_data_not_an_array", "check_transformer_general", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged",
    "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
    "check_fit_score_takes_y")}


class Bank(NamedTuple):
    """The labeled source outputs eq. 6 compares a query with: up to ``bank_per_class`` per class."""

    outputs: np.ndarray  # continuous u of the bank rows, (n_bank, bits)
    labels: np.ndarray  # their class indices into ``classes_``
    rows: np.ndarray  # their row numbers among the source rows given to fit


class DAH(ClassifierMixin, DAEstimator):
    """Domain Adaptive Hashing (Venkateswara et al., CVPR 2017) on fixed features, as a skada estimator.

    Trains the hash head on the source rows (labels read) and target rows (labels never read)
    of ``X`` with :func:`dahash.training.trainer.train_model`, the trainer of ``dahash train``,
    and classifies by eq. 6 against a bank of source outputs, as ``dahash evaluate`` does.

    Parameters
    ----------
    bits, hidden, k, epochs, lr_start, lr_end, eta, beta, like_weight, inner_product_scale,
    feature_norm, mmd_layers, mmd_reduction, mmd_estimator, reference_batch, entropy_reduction,
    bank_per_class, seed, num_threads, hidden_bn, hidden_dropout
        The :class:`dahash.training.config.TrainConfig` settings of the same names. ``None`` (the default)
        takes the value of ``method``'s preset, which is TrainConfig's default unless the preset
        changes it; a value given here always wins, so ``DAH(method="NoDA", gamma=5000)``
        trains with gamma 5000.
    gamma : float, "auto" or None, default "auto"
        The MMD weight. ``"auto"``: for the methods that tune it (DAH, DAH-e, DAH-paper, DAH-cw, DAN:
        :data:`dahash.selection_grids.GAMMA_GRIDS`) ``fit`` first chooses it per task without target labels
        among the method's candidates (those that agree with the parameters given, e.g. ``mmd_estimator``),
        by ``criterion`` on a stratified 20 % of the source (Venkateswara et al., CVPR 2017, Sec. 5.2), then
        trains the choice on every row; the preset's value for the other methods. ``None``: the preset's value.
    criterion : str, default "paper"
        The rule of ``gamma="auto"`` (:data:`dahash.selection_grids.CRITERIA`, docs/selection.md).
    schedule : str, default "auto"
        ``"auto"``: for the hash-head methods, ``fit`` first chooses the schedule (``epochs``, ``lr_start``,
        ``lr_end``) and the hidden layers' regularisation (``hidden_bn``, ``hidden_dropout``), each group unless
        one of its settings is given, among :data:`dahash.selection_grids.SCHEDULE_GRID` by held-out source
        accuracy of the source-only twin (NoDA), keeping the paper's unless another beats it beyond noise
        (issue 31); the choice of gamma then trains with that choice. ``"paper"``: the preset's values.
    method : str, default "DAH"
        A preset of :data:`dahash.training.methods.DEEP_METHODS` (DAH, DAH-e, NoDA; the softmax baselines
        Deep, DAN, DANN classify by softmax and have no hash codes).
    extra : dict or None
        Any other TrainConfig setting, e.g. ``{"lr_schedule": "inverse", "device": "cpu"}``.
    out : str or None
        A new run folder: per-epoch checkpoints, ``history.csv`` and ``model.pt`` as
        ``dahash train`` writes them. None (default): nothing is written.
    progress : bool
        Show the training progress bar.

    Attributes
    ----------
    model_ : the trained head (:class:`dahash.models.DAHHead`, or ``ClassifierHead`` for softmax methods)
    module_ : the same head, with ``layer_name = "fc7"`` (what skada's DeepEmbeddedValidation reads)
    classes_ : the distinct source labels, sorted (``LabelEncoder``)
    normalizer_ : the input normalisation, fitted on source and target rows
    config_ : the TrainConfig trained with
    bank_ : :class:`Bank` of eq. 6 (None for softmax methods)
    history_ : per-epoch losses (list of dicts) when ``out`` is given, else None
    n_features_in_ : input feature dimension
    selection_ : the :class:`dahash.runs.selection.Selection` of ``gamma="auto"`` (every candidate's scores
        and the rule), or None when gamma was not chosen
    schedule_ : the Selection of ``schedule="auto"``, or None when the schedule was not chosen
    """

    # ImportanceWeightedScorer requires an estimator whose score consumes sample_weight.
    __metadata_request__score = {"sample_weight": True}
    __metadata_request__transform = {"sample_domain": True, "allow_source": True}

    def __init__(self, *, bits: int | None = None, hidden: tuple[int, int] | None = None, k: int | None = None,
                 epochs: int | None = None, lr_start: float | None = None, lr_end: float | None = None,
                 gamma: float | str | None = AUTO, eta: float | None = None, beta: float | None = None,
                 like_weight: float | None = None, inner_product_scale: float | None = None,
                 feature_norm: str | None = None, mmd_layers: tuple[str, ...] | None = None,
                 mmd_reduction: str | None = None, mmd_estimator: str | None = None,
                 reference_batch: int | None = None, entropy_reduction: str | None = None,
                 bank_per_class: int | None = None, seed: int | None = None, num_threads: int | None = None,
                 hidden_bn: bool | None = None, hidden_dropout: float | None = None,
                 method: str = "DAH", criterion: str = "paper", schedule: str = "auto",
                 extra: dict[str, Any] | None = None,
                 out: str | None = None, progress: bool = False) -> None:
        self.bits = bits
        self.hidden = hidden
        self.k = k
        self.epochs = epochs
        self.lr_start = lr_start
        self.lr_end = lr_end
        self.gamma = gamma
        self.eta = eta
        self.beta = beta
        self.like_weight = like_weight
        self.inner_product_scale = inner_product_scale
        self.feature_norm = feature_norm
        self.mmd_layers = mmd_layers
        self.mmd_reduction = mmd_reduction
        self.mmd_estimator = mmd_estimator
        self.reference_batch = reference_batch
        self.entropy_reduction = entropy_reduction
        self.bank_per_class = bank_per_class
        self.seed = seed
        self.num_threads = num_threads
        self.hidden_bn = hidden_bn
        self.hidden_dropout = hidden_dropout
        self.method = method
        self.criterion = criterion
        self.schedule = schedule
        self.extra = extra
        self.out = out
        self.progress = progress

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # transform gives packed uint8 codes, whatever the input's dtype.
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    @classmethod
    def from_config(cls, config: TrainConfig, *, method: str = "DAH", **settings: Any) -> "DAH":
        """The estimator that trains with ``config`` updated by ``settings`` (any TrainConfig fields);
        data, file and run-folder settings are left out. Only values that differ from ``method``'s
        preset are set, so ``repr`` shows what the preset does not."""
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = {**config.to_dict(), **settings}
        preset = method_config(method, {}).to_dict()
        changed = {k: v for k, v in values.items() if k not in INPUT_SETTINGS and v != preset[k]}
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in changed.items() if k in PARAMETERS}
        extra = {k: v for k, v in changed.items() if k not in PARAMETERS}
        # The config's gamma and schedule, never "auto": this estimator trains what the config says.
        return cls(method=method, extra=extra or None, schedule="paper", **{**params, "gamma": values["gamma"]})

    def _given(self) -> dict[str, Any]:
        """The parameters set to a value (not None, the preset's, nor ``"auto"``, chosen at fit)."""
        return {name: getattr(self, name) for name in PARAMETERS if getattr(self, name) not in (None, AUTO)}

    def make_config(self) -> TrainConfig:
        """The TrainConfig ``fit`` trains with: ``method``'s preset, then the parameters set, then
        ``extra``; ConfigError names a bad value."""
        extra = dict(self.extra or {})
        clash = sorted(set(extra) & set(PARAMETERS))
        if clash:
            raise ConfigError(f"extra sets {', '.join(clash)}, which DAH takes as parameter(s); set them directly")
        data = sorted(set(extra) & set(_NOT_EXTRA))
        if data:
            raise ConfigError(f"extra sets {', '.join(data)}: DAH.fit takes the data as arrays "
                              "(and the run folder as out=)")
        if self.method not in DEEP_METHODS:
            raise ConfigError(f"method must be one of {', '.join(DEEP_METHODS)}; got {self.method!r}")
        settings = self._given()
        for name in ("hidden", "mmd_layers"):
            if name in settings and isinstance(settings[name], tuple):
                settings[name] = list(settings[name])
        out = None if self.out is None else str(self.out)
        return method_config(self.method, {**settings, **extra, "out": out}, source="DAH parameters")

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any, sample_domain: Any = None) -> "DAH":
        """Train on source rows (``sample_domain > 0``, labels read) and target rows (``< 0``, labels
        ignored); without ``sample_domain``, rows labelled -1 are the target (skada's inference)."""
        config = self.make_config()
        X = _check_X(X)
        if y is None:
            raise DataError("DAH requires y to be passed, but the target y is None (the source rows' labels; "
                            "target rows may hold -1)")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise DataError(f"y must hold one label per row of X ({len(X)}), got shape {y.shape}")
        source, target = _domain_masks(y, sample_domain, len(X))
        try:
            check_classification_targets(y[source])
        except ValueError as exc:
            raise DataError(f"the source labels must be classes: {exc}") from None
        if not source.any() or not target.any():
            raise DataError(f"DAH needs source and target rows, got {int(source.sum())} source and "
                            f"{int(target.sum())} target (target rows: sample_domain < 0, or y == -1)")
        encoder = LabelEncoder().fit(y[source])
        if len(encoder.classes_) < 2:
            raise DataError(f"the source rows hold {len(encoder.classes_)} class(es); DAH needs at least 2")
        ys = encoder.transform(y[source]).astype(np.int64)
        self.schedule_ = self._choose_schedule(X[source], ys, X[target])
        scheduled = self if self.schedule_ is None else clone(self).set_params(**self.schedule_.best_params)
        self.selection_ = scheduled._select(X[source], ys, X[target])
        if self.selection_ is not None:
            config = clone(scheduled).set_params(**self.selection_.best_params).make_config()
        elif self.schedule_ is not None:
            config = scheduled.make_config()
        # Threads not given: the cores other jobs leave free (2 threads on 2 cores shared with a busy job
        # trained 1.5x slower than 1 thread; docs/usage.md), for the chosen setting's training too.
        config = dataclasses.replace(config, num_threads=config.num_threads or free_cores())
        self.classes_ = encoder.classes_
        self.n_features_in_ = X.shape[1]
        # As load_domains does for feature files: the normaliser is fitted on both domains, no labels.
        src = FeatureSet(X[source], ys, classes=[str(c) for c in self.classes_])
        tgt = FeatureSet(X[target], classes=list(src.classes))
        normalizer = FeatureNormalizer(config.feature_norm).fit(src.X, tgt.X)
        src.X, tgt.X = normalizer.transform(src.X), normalizer.transform(tgt.X)
        model = train_model(config, Domains(src, tgt, normalizer), progress=self.progress)
        model.eval()
        model.layer_name = "fc7"
        self.model_ = self.module_ = model
        self.normalizer_ = normalizer
        self.config_ = config
        self.bank_ = None
        if not isinstance(model, ClassifierHead):
            rows = select_bank(ys, config.bank_per_class, seed=config.seed)
            # All source rows at once, then the bank's: the numbers dahash.runs.run computes, to the bit.
            self.bank_ = Bank(head_outputs(model, src.X)[rows], ys[rows], rows)
        self.history_ = _read_history(Path(config.out) / "history.csv") if config.out else None
        return self

    def _choose_schedule(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray) -> Selection | None:
        """``schedule="auto"``: the schedule stage on the source-only twin (None when it does not run)."""
        check_choice("schedule", self.schedule, SCHEDULE_MODES)
        given = self._given()
        grid = auto_schedule(self.method, {**given, **(self.extra or {})}, self.schedule)
        if not grid:
            return None
        twin = clone(self).set_params(method="NoDA", gamma=0.0, eta=0.0, schedule="paper", out=None, progress=False)
        return select_setting(lambda setting: clone(twin).set_params(**setting), grid, Xs, ys, Xt,
                              criterion="schedule", val_fraction=VAL_FRACTION, seed=self.make_config().seed,
                              progress=self.progress)

    def _select(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray) -> Selection | None:
        """``gamma="auto"``: the label-free selection among the method's candidates that agree with the
        parameters given (None when gamma is given or the method does not tune it)."""
        if self.gamma != AUTO or self.method not in GAMMA_GRIDS:
            return None
        check_choice("criterion", self.criterion, CRITERIA)
        given = self._given()
        grid = auto_grid(self.method, {**given, **(self.extra or {})})
        if not grid:
            raise ConfigError(f"no {self.method} candidate agrees with the parameters given ({given}); give gamma")
        seed = self.make_config().seed
        quiet = clone(self).set_params(out=None, progress=False)
        return select_setting(lambda setting: clone(quiet).set_params(**setting), grid, Xs, ys, Xt,
                              criterion=self.criterion, val_fraction=VAL_FRACTION, seed=seed,
                              progress=self.progress)

    # ------------------------------------------------------------------ outputs

    def _inputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} features, but DAH was fitted on {self.n_features_in_}")
        return self.normalizer_.transform(X)

    def encode(self, X: Any) -> np.ndarray:
        """Continuous outputs u in (-1, 1)^bits of the hash head (logits for softmax methods)."""
        X = self._inputs(X)
        return head_outputs(self.model_, X)

    def transform(self, X: Any, sample_domain: Any = None, *, allow_source: bool = False) -> np.ndarray:
        """Packed binary codes sgn(u), uint8 of shape (n, ceil(bits / 8)) (:func:`dahash.codes.pack_codes`)."""
        check_is_fitted(self, "model_")
        if isinstance(self.model_, ClassifierHead):
            raise ConfigError(f"method {self.method!r} trains a softmax classifier, which has no hash codes")
        return pack_codes(self.encode(X))

    def predict_features(self, X: Any) -> np.ndarray:
        """The fc7 representation (float32), the features skada's DeepEmbeddedValidation weights by."""
        X = self._inputs(X)
        return head_outputs(self.model_, X, layer="fc7")

    def predict_proba(self, X: Any, sample_domain: Any = None, *, allow_source: bool = False,
                      codes: bool = False) -> np.ndarray:
        """p(class | x): eq. 6 against the bank of source outputs (``codes``: with sgn codes on both
        sides), or the softmax of a softmax method; columns follow ``classes_``."""
        u = self.encode(X)
        if self.bank_ is None:
            return torch.softmax(torch.from_numpy(u), 1).numpy().astype(np.float64)
        return class_probabilities(u, self.bank_.outputs, self.bank_.labels, len(self.classes_),
                                   binary=codes).astype(np.float64)

    def predict_log_proba(self, X: Any, sample_domain: Any = None, *, allow_source: bool = False) -> np.ndarray:
        """log p(class | x) of :meth:`predict_proba`, computed in log space (no log of 0)."""
        u = torch.from_numpy(self.encode(X))
        if self.bank_ is None:
            return torch.log_softmax(u, 1).numpy().astype(np.float64)
        bank = torch.from_numpy(self.bank_.outputs)
        labels = torch.from_numpy(self.bank_.labels)
        with torch.no_grad():
            parts = [class_log_probabilities(u[i:i + 2048], bank, labels, len(self.classes_))
                     for i in range(0, len(u), 2048)]
        return torch.cat(parts).numpy().astype(np.float64) if parts else np.zeros((0, len(self.classes_)))

    def infer(self, X: Any, **params: Any) -> torch.Tensor:
        """Class logits, what skada's MaNoScorer normalises: a softmax method's, or eq. 6's log class
        probabilities (their softmax is eq. 6's probabilities)."""
        return torch.from_numpy(self.predict_log_proba(X))

    def predict(self, X: Any, sample_domain: Any = None, *, allow_source: bool = False,
                codes: bool = False) -> np.ndarray:
        """The most probable class of each row (eq. 6), as a value of ``classes_``."""
        proba = self.predict_proba(X, codes=codes)
        return self.classes_[proba.argmax(1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None, sample_domain: Any = None, *,
              allow_source: bool = False) -> float:
        """(Weighted) fraction of rows whose predicted class is ``y``."""
        return float(accuracy_score(np.asarray(y), self.predict(X), sample_weight=sample_weight))


def _check_X(X: Any) -> np.ndarray:
    """``X`` as a finite float32 matrix; DataError otherwise (scikit-learn's wording for sparse, empty and
    wrongly shaped input, ours naming the first row with a NaN)."""
    try:
        X = check_array(X, dtype=np.float32, ensure_all_finite=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"X must be a dense 2-D numeric matrix (n_samples, n_features): {one_line(exc)}") from None
    bad = ~np.isfinite(X).all(1)
    if bad.any():
        raise DataError(f"X contains NaN or infinite values (row {int(np.flatnonzero(bad)[0])})")
    return X


def _domain_masks(y: np.ndarray, sample_domain: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and target row masks from ``sample_domain`` (>0 source, <0 target), or from y == -1."""
    if sample_domain is None:
        if not np.issubdtype(y.dtype, np.number):
            raise DataError("sample_domain is required when y is not numeric (skada infers the target "
                            "from y == -1 only)")
        domain = np.where(y == MASKED, TARGET_DOMAIN, SOURCE_DOMAIN)
    else:
        domain = np.asarray(sample_domain)
        if domain.ndim == 0:
            domain = np.full(n, domain)
        if domain.shape != (n,):
            raise DataError(f"sample_domain must hold one domain per row of X ({n}), got shape {domain.shape}")
        if not np.issubdtype(domain.dtype, np.number) or (domain == 0).any():
            raise DataError("sample_domain must be positive (source) or negative (target) integers, got "
                            f"{np.unique(domain)[:5].tolist()}")
    return domain > 0, domain < 0


def _read_history(path: Path) -> list[dict[str, float]] | None:
    """history.csv of a run folder as one dict per epoch."""
    if not path.exists():
        return None
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

