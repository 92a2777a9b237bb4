"""Parameter checks shared by the estimators, in scikit-learn's style: each error names the
parameter, the value given and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from dahash.errors import ConfigError


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; otherwise a ConfigError naming ``name``."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < low
            or (high is not None and value > high)):
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``); otherwise a ConfigError naming ``name``."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, Real) or not np.isfinite(value)
            or value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``; otherwise a ConfigError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; otherwise a ConfigError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_seed(value: Any, name: str = "random_state") -> int | None:
    """A seed: None or an integer >= 0; otherwise a ConfigError naming ``name``."""
    if value is None:
        return None
    return check_int(name, value, low=0)
