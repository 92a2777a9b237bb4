"""Tests for TrainConfig: YAML round trip, validation, and defaults < YAML < CLI flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dahash.cli import build_parser
from dahash.training.config import TrainConfig, load_yaml, resolve_config
from dahash.errors import ConfigError


def _parse(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_defaults_are_the_papers() -> None:
    c = TrainConfig().validate()
    assert (c.bits, c.k, c.epochs) == (64, 5, 300)
    assert (c.lr_start, c.lr_end, c.momentum, c.weight_decay) == (1e-4, 1e-5, 0.9, 5e-4)
    assert (c.like_weight, c.beta, c.gamma, c.eta, c.bank_per_class) == (10.0, 1.0, 5000.0, 1.0, 200)
    assert c.mmd_layers == ["fc6", "fc7", "fc8"]
    # default lists are not shared between instances
    a, b = TrainConfig(), TrainConfig()
    a.hidden.append(3)
    assert b.hidden == [256, 256]


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(source_features="a.npz", target_features="b.npz", out="runs/x", bits=48,
                         hidden=[32, 16], feature_norm="l2", lr_start=3e-3, lr_end=3e-6,
                         mmd_layers=["fc7", "fc8"], mmd_reduction="mean", num_threads=2, seed=11,
                         gamma=0.0).validate()
    path = tmp_path / "config.yaml"
    config.save(path)
    data = load_yaml(path)
    assert data == config.to_dict()
    back = TrainConfig.from_dict(data)
    assert back == config
    assert isinstance(back.lr_start, float) and isinstance(back.bits, int)
    assert back.x_key is None
    # save leaves no temporary files next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_from_dict_converts_yaml_types() -> None:
    # YAML 1.1 reads '1e-3' (no dot) as a string and '5' for a float field as int.
    data = yaml.safe_load("lr_start: 1e-3\ngamma: 5\nbits: 32.0\nhidden: [64, '32']\n")
    config = TrainConfig.from_dict(data)
    assert config.lr_start == 1e-3 and isinstance(config.lr_start, float)
    assert config.gamma == 5.0 and isinstance(config.gamma, float)
    assert config.bits == 32 and isinstance(config.bits, int)
    assert config.hidden == [64, 32]


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) bitz") as info:
        TrainConfig.from_dict({"bitz": 16, "bits": 16}, source="my.yaml")
    assert str(info.value).startswith("my.yaml: ")


@pytest.mark.parametrize(("values", "field"), [
    ({"bits": "many"}, "bits"),
    ({"bits": 16.5}, "bits"),
    ({"bits": True}, "bits"),
    ({"lr_start": "fast"}, "lr_start"),
    ({"hidden": ["wide", 3]}, "hidden"),
    ({"k": None}, "k"),
])
def test_type_errors_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(values, source="cfg.yaml")
    message = str(info.value)
    assert field in message and message.startswith("cfg.yaml: ")
    assert "\n" not in message


@pytest.mark.parametrize(("values", "field"), [
    ({"bits": 0}, "bits"),
    ({"k": -1}, "k"),
    ({"epochs": 0}, "epochs"),
    ({"lr_start": 0.0}, "lr_start"),
    ({"momentum": -0.1}, "momentum"),
    ({"gamma": -1.0}, "gamma"),
    ({"hidden": [32]}, "hidden"),
    ({"hidden": [32, 0]}, "hidden"),
    ({"mmd_layers": ["fc9"]}, "mmd_layers"),
    ({"mmd_layers": []}, "mmd_layers"),
    ({"num_threads": 0}, "num_threads"),
    ({"feature_norm": "zscore"}, "feature_norm"),
    ({"mmd_reduction": "max"}, "mmd_reduction"),
    ({"entropy_reduction": "avg"}, "entropy_reduction"),
])
def test_range_and_choice_errors_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict(values)


def test_choices_error_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match="none, l2, standardize"):
        TrainConfig(feature_norm="zscore").validate()


def test_optional_fields_accept_none() -> None:
    config = TrainConfig.from_dict({"num_threads": None, "x_key": None, "out": None})
    assert config.num_threads is None and config.x_key is None


def test_load_yaml_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_yaml(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("bits: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="scalar.yaml: expected a mapping"):
        load_yaml(scalar)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_precedence_flags_over_yaml_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("bits: 32\nk: 3\nfeature_norm: l2\nlr_start: 0.01\n")
    config = resolve_config(_parse("--config", str(path), "--bits", "16", "--lr-start", "2e-3"), str(path))
    assert config.bits == 16            # flag beats YAML
    assert config.lr_start == 2e-3      # flag beats YAML
    assert config.k == 3                # YAML beats default
    assert config.feature_norm == "l2"  # YAML beats default
    assert config.epochs == 300         # default
    # Without the YAML, flags beat defaults, and unset flags leave defaults.
    config = resolve_config(_parse("--bits", "128"))
    assert config.bits == 128 and config.k == 5
    # Parser-only options (--resume, --quiet, --config) are not settings.
    args = _parse("--resume", "--quiet")
    assert resolve_config(args) == TrainConfig()


def test_list_flags() -> None:
    config = resolve_config(_parse("--hidden", "32", "48", "--mmd-layers", "fc7", "fc8"))
    assert config.hidden == [32, 48]
    assert config.mmd_layers == ["fc7", "fc8"]
    config = resolve_config(_parse("--mmd-layers", "fc8"))
    assert config.mmd_layers == ["fc8"]


def test_flag_type_error_names_the_field_and_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^command line: bits must be int, got '3\.5'"):
        resolve_config(_parse("--bits", "3.5"))
    path = tmp_path / "c.yaml"
    path.write_text("unknown_thing: 1\n")
    with pytest.raises(ConfigError, match="unknown_thing"):
        resolve_config(_parse(), str(path))


def test_cli_choices_are_enforced_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parse("--feature-norm", "zscore")
    assert info.value.code == 2
    assert "feature-norm" in capsys.readouterr().err


def test_every_field_has_a_flag() -> None:
    actions = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in actions, f.name


@pytest.mark.parametrize("name, classes", [("office31", 31), ("office-home", 65)])
def test_paper_configs_hold_the_papers_settings(name: str, classes: int) -> None:
    """configs/*.yaml are the paper's runs (Sec. 5.2 and the authors' scalings)."""
    path = Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"
    config = TrainConfig.from_dict(load_yaml(path), source=str(path))
    assert config.backbone == "alexnet" and config.finetune and config.augment
    assert (config.k, config.bits, config.epochs) == (5, 64, 300)
    assert (config.lr_start, config.lr_end, config.momentum, config.weight_decay) == (1e-4, 1e-5, 0.9, 5e-4)
    assert (config.pretrained_lr_mult, config.new_lr_mult, config.bias_lr_factor) == (0.1, 1.0, 2.0)
    assert (config.like_weight, config.inner_product_scale, config.beta, config.gamma, config.eta) == \
        (10.0, 0.5, 1.0, 5000.0, 1.0)
    assert config.mmd_layers == ["fc6", "fc7", "fc8"] and config.bank_per_class == 200
    assert f"{classes} classes" in path.read_text()
