"""Config loading, dotted overrides, validation, resolution and run-directory hashing."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetime.train import (Config, apply_overrides, config_hash, config_to_yaml, load_config, resolve_config,
                              run_directory, valid_keys)
from sparsetime.train.config import validate_config

CONTRACT_KEYS = ["dataset", "data_dir", "model", "epochs", "batch_size", "seed", "output_dir", "optim.lr",
                 "sparsity.method", "sparsity.density", "sparsity.distribution", "sparsity.growth",
                 "sparsity.update_interval", "sparsity.drop_fraction"]


def test_contract_keys_exist():
    keys = set(valid_keys())
    assert set(CONTRACT_KEYS) <= keys


def test_default_is_set_itop_mlp_fashion_mnist_98_percent_sparse():
    c = resolve_config(Config())
    assert (c.dataset, c.model, c.sparsity.method, c.sparsity.density) == ("fashion_mnist", "mlp", "set", 0.02)
    assert c.model_options == {"hidden": [1000, 1000]}  # MLP 784-1000-1000-10
    assert c.sparsity.growth == "random" and c.sparsity.stop_fraction == 1.0  # ITOP: random growth, never stops


def test_overrides_are_converted_to_the_field_type():
    c = apply_overrides(Config(), ["sparsity.density=2e-2", "optim.lr=1", "epochs=3.0", "optim.nesterov=false",
                                   "schedule.milestones=0.3,0.6", "sparsity.update_interval=none",
                                   "sparsity.dense_layers=[layers.0]", "data_dir=null", "model=lenet5"])
    assert c.sparsity.density == 0.02 and isinstance(c.sparsity.density, float)
    assert c.optim.lr == 1.0 and isinstance(c.optim.lr, float)
    assert c.epochs == 3 and isinstance(c.epochs, int)
    assert c.optim.nesterov is False
    assert c.schedule.milestones == [0.3, 0.6]
    assert c.sparsity.update_interval is None
    assert c.sparsity.dense_layers == ["layers.0"]
    assert c.data_dir is None
    assert c.model == "lenet5"


def test_free_form_option_keys_take_yaml_values():
    c = apply_overrides(Config(), ["model_options.hidden=[16, 8]", "data.options.train_size=64",
                                   "sparsity.options.regrow_dropped=false"])
    assert c.model_options == {"hidden": [16, 8]}
    assert c.data.options == {"train_size": 64}
    assert c.sparsity.options == {"regrow_dropped": False}


def test_overrides_do_not_modify_the_input():
    base = Config()
    apply_overrides(base, ["optim.lr=0.5", "model_options.hidden=[3]"])
    assert base.optim.lr == 0.1 and base.model_options == {}


@pytest.mark.parametrize("bad, suggestion", [
    ("sparsity.densty=0.1", "sparsity.density"),
    ("optim.momentun=0.5", "optim.momentum"),
    ("density=0.1", "sparsity.density"),
    ("epoch=3", "epochs"),
])
def test_unknown_key_suggests_the_closest(bad, suggestion):
    with pytest.raises(ValueError, match=f"did you mean '{suggestion}'"):
        apply_overrides(Config(), [bad])


@pytest.mark.parametrize("bad, message", [
    ("epochs=three", "epochs"),
    ("optim.nesterov=maybe", "optim.nesterov"),
    ("epochs=2.5", "epochs"),
    ("sparsity.density=none", "cannot read 'none' as float"),
    ("optim=0.1", "is a section"),
    ("no_equals_sign", "key=value"),
])
def test_bad_override_values_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(Config(), [bad])


@pytest.mark.parametrize("override, allowed", [
    ("optim.name=rmsprop", "sgd, adam, adamw"),
    ("schedule.name=step", "none, multistep, cosine"),
    ("progress=fancy", "auto, bar, log, none"),
    ("sparsity.density=0", "0 < density <= 1"),
    ("sparsity.density=1.5", "0 < density <= 1"),
    ("schedule.milestones=[0.5, 1.5]", "fractions"),
    ("epochs=0", ">= 1"),
])
def test_invalid_values_name_the_allowed_ones(override, allowed):
    with pytest.raises(ValueError, match=re.escape(allowed)) as info:
        validate_config(apply_overrides(Config(), [override]))
    assert override.split("=")[0] in str(info.value)


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match="available: .*dense.*rigl.*set.*snfs.*static"):
        resolve_config(apply_overrides(Config(), ["sparsity.method=magic"]))


def test_unknown_model_option_is_rejected():
    with pytest.raises(ValueError, match="unknown model_options \\['width'\\]; allowed: \\['hidden'\\]"):
        resolve_config(apply_overrides(Config(), ["model_options.width=3"]))


def test_yaml_file_with_nested_sections(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dataset: synthetic\nepochs: 2\noptim:\n  lr: 0.1\n  name: adamw\nsparsity:\n"
                    "  method: rigl\n  density: 0.1\n")
    c = load_config(path, ["optim.lr=0.2"])
    assert (c.dataset, c.epochs, c.optim.name, c.optim.lr) == ("synthetic", 2, "adamw", 0.2)
    assert (c.sparsity.method, c.sparsity.density) == ("rigl", 0.1)


def test_yaml_file_with_unknown_key_suggests(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("sparsity:\n  grwoth: random\n")
    with pytest.raises(ValueError, match="did you mean 'sparsity.growth'"):
        load_config(path)


def test_missing_or_non_mapping_yaml(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


def test_yaml_round_trip_is_exact(tmp_path):
    c = resolve_config(apply_overrides(Config(), ["sparsity.method=rigl", "optim.lr=0.0375", "seed=7",
                                                  "model_options.hidden=[5]"]))
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(c))
    assert load_config(path) == c


@pytest.mark.parametrize("method, growth, alpha, stop, distribution, redistribution", [
    ("set", "random", 0.5, 1.0, "erk", False),
    ("rigl", "gradient", 0.3, 0.75, "erk", False),
    ("snfs", "momentum", 0.5, 1.0, "uniform", True),
])
def test_method_defaults_fill_unset_fields(method, growth, alpha, stop, distribution, redistribution):
    s = resolve_config(apply_overrides(Config(), [f"sparsity.method={method}"])).sparsity
    assert (s.growth, s.drop_fraction, s.stop_fraction, s.distribution, s.redistribution) == (
        growth, alpha, stop, distribution, redistribution)


def test_explicit_values_beat_method_defaults():
    s = resolve_config(apply_overrides(Config(), ["sparsity.method=rigl", "sparsity.growth=random",
                                                  "sparsity.drop_fraction=0.1"])).sparsity
    assert (s.growth, s.drop_fraction) == ("random", 0.1)


def test_static_and_dense_fix_their_fields():
    static = resolve_config(apply_overrides(Config(), ["sparsity.method=static"])).sparsity
    assert static.update_interval is None and static.density == 0.02
    dense = resolve_config(apply_overrides(Config(), ["sparsity.method=dense", "sparsity.density=0.3"])).sparsity
    assert dense.density == 1.0 and dense.update_interval is None


def test_hash_ignores_location_and_display_fields_only():
    base = resolve_config(Config())
    same = resolve_config(apply_overrides(Config(), ["output_dir=elsewhere", "device=cpu", "progress=none",
                                                     "log_interval=7", "data_dir=elsewhere", "data.num_workers=3"]))
    assert config_hash(base) == config_hash(same)
    for change in ["sparsity.density=0.05", "optim.lr=0.02", "seed=1", "epochs=6", "extend=2",
                   "sparsity.method=rigl", "data.train_subset=10", "model_options.hidden=[10]"]:
        assert config_hash(resolve_config(apply_overrides(Config(), [change]))) != config_hash(base), change


def test_run_directory_is_name_then_hash():
    c = resolve_config(apply_overrides(Config(), ["output_dir=out", "sparsity.density=0.05"]))
    path = run_directory(c)
    assert path.parent.as_posix() == "out"
    assert path.name == f"set-mlp-fashion_mnist-d0.05-{config_hash(c)}"
    named = resolve_config(apply_overrides(c, ["name=mine"]))
    assert run_directory(named).name == f"mine-{config_hash(c)}"


def test_total_epochs_scales_with_extend():
    assert apply_overrides(Config(), ["epochs=3", "extend=2"]).total_epochs == 6
    assert apply_overrides(Config(), ["epochs=3", "extend=1.5"]).total_epochs == round(4.5)


@settings(max_examples=40, deadline=None)
@given(lr=st.floats(min_value=1e-6, max_value=10, allow_nan=False), epochs=st.integers(1, 1000),
       nesterov=st.booleans())
def test_override_text_round_trips_typed_values(lr, epochs, nesterov):
    c = apply_overrides(Config(), [f"optim.lr={lr!r}", f"epochs={epochs}", f"optim.nesterov={nesterov}"])
    assert (c.optim.lr, c.epochs, c.optim.nesterov) == (lr, epochs, nesterov)
    again = yaml.safe_load(config_to_yaml(c))
    assert again["optim"]["lr"] == lr and dataclasses.asdict(c)["epochs"] == epochs
