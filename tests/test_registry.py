"""Registry: declare/register/get/canonical/names, alias rules, did-you-mean, check_kwargs; errors."""

from __future__ import annotations

import math

import pytest

from deepscope.errors import (CheckpointError, ConfigError, DataError, DeepscopeError, TrainingDiverged,
                              did_you_mean)
from deepscope.registry import Entry, Registry, check_kwargs, normalize_name


@pytest.fixture
def reg():
    r = Registry("widget")
    r.declare("batch_norm", "math:sqrt", aliases=("BatchNormalization", "bn"), doc="sqrt", flavour="sour")
    r.declare("alpha", math.floor)

    @r.register("zeta", aliases=("last",))
    def zeta(x):
        return -x

    return r


def test_names_entries_len_contains(reg):
    assert reg.names() == ["alpha", "batch_norm", "zeta"]
    assert [e.name for e in reg.entries()] == ["alpha", "batch_norm", "zeta"]
    assert len(reg) == 3
    assert "bn" in reg and "ZETA" in reg and "Batch-Norm" in reg
    assert "gamma" not in reg and 3 not in reg and None not in reg
    assert repr(reg) == "Registry('widget', ['alpha', 'batch_norm', 'zeta'])"


def test_entry_fields(reg):
    entry = reg.entry("bn")
    assert isinstance(entry, Entry)
    assert entry.name == "batch_norm" and entry.aliases == ("BatchNormalization", "bn")
    assert entry.doc == "sqrt" and entry.meta == {"flavour": "sour"} and entry.params is None


def test_register_returns_the_object_and_get_returns_it(reg):
    assert reg.get("last")(3) == -3
    assert reg.get("alpha") is math.floor


def test_declared_target_is_imported_on_get_and_cached(reg):
    entry = reg.entry("batch_norm")
    assert entry.target == "math:sqrt"  # lazily declared: not imported yet
    assert reg.get("batch_norm") is math.sqrt
    assert entry.target is math.sqrt  # the import is done once
    assert Entry("x", "os.path:join").load() is __import__("os").path.join


@pytest.mark.parametrize("spelling", ["batch_norm", "BATCH_NORM", "batch-norm", "BatchNorm", "batchnorm",
                                      "Batch Norm", "BatchNormalization", "batch_normalization", "bn", "BN"])
def test_canonical_ignores_case_underscores_hyphens(reg, spelling):
    assert reg.canonical(spelling) == "batch_norm"


def test_normalize_name():
    assert normalize_name("Batch_Norm-2 d") == "batchnorm2d"
    assert normalize_name(12) == "12"


def test_alias_clash_raises_value_error(reg):
    with pytest.raises(ValueError, match="widget name 'BN' is already used by 'batch_norm'"):
        reg.declare("bias_net", "math:ceil", aliases=("BN",))
    with pytest.raises(ValueError, match="widget name 'Alpha' is already used by 'alpha'"):
        reg.declare("Alpha", "math:ceil")  # a new name that normalises like an old one
    with pytest.raises(ValueError, match="already used by 'zeta'"):
        reg.register("omega", aliases=("La-st",))(lambda: None)


def test_an_entry_may_repeat_its_own_name_as_alias():
    r = Registry("thing")
    r.declare("relu", "math:fabs", aliases=("ReLU", "relu"))
    assert r.canonical("RELU") == "relu" and len(r) == 1


def test_unknown_name_error(reg):
    with pytest.raises(ConfigError) as info:
        reg.canonical("zetta", path="model.widget")
    msg = str(info.value)
    assert msg == ("model.widget: unknown widget 'zetta'; did you mean 'zeta'? "
                   "(available: alpha, batch_norm, zeta)")
    assert info.value.problems == [msg]


def test_unknown_name_suggests_an_alias_when_that_is_closest(reg):
    with pytest.raises(ConfigError, match=r"unknown widget 'BatchNormalisation'; did you mean 'BatchNormalization'\?"):
        reg.get("BatchNormalisation")


def test_unknown_name_without_a_close_option(reg):
    with pytest.raises(ConfigError) as info:
        reg.entry("qqqqqqq")
    msg = str(info.value)
    assert msg.startswith("unknown widget 'qqqqqqq' (available: alpha, batch_norm, zeta)")
    assert "did you mean" not in msg


def test_registry_did_you_mean(reg):
    assert reg.did_you_mean("alpah") == "; did you mean 'alpha'?"
    assert reg.did_you_mean("xyzxyz") == ""


# --- did_you_mean and the error classes -------------------------------------------------------------


def test_did_you_mean():
    assert did_you_mean("epoch", ["epochs", "batch_size"]) == "; did you mean 'epochs'?"
    assert did_you_mean("Batch-Size", ["epochs", "batch_size"]) == "; did you mean 'batch_size'?"
    assert did_you_mean("nothing_like_it", ["epochs"]) == ""
    assert did_you_mean("x", []) == ""
    two = did_you_mean("mse", ["mse2", "mse3", "abc"], n=2)
    assert two in ("; did you mean 'mse2' or 'mse3'?", "; did you mean 'mse3' or 'mse2'?")
    # spellings that match alike: the first one given wins (canonical names are passed before aliases)
    assert did_you_mean("adamm", ["adam", "Adam"]) == "; did you mean 'adam'?"


def test_config_error_formats_its_problems():
    one = ConfigError(problems=["a.b: bad"])
    assert str(one) == "invalid config (1 problem):\n  - a.b: bad"
    two = ConfigError(problems=["a: x", "b: y"])
    assert str(two).splitlines() == ["invalid config (2 problems):", "  - a: x", "  - b: y"]
    plain = ConfigError("just this")
    assert str(plain) == "just this" and plain.problems == []


def test_error_hierarchy_and_exit_codes():
    for cls in (ConfigError, DataError, CheckpointError, TrainingDiverged):
        assert issubclass(cls, DeepscopeError)
    assert ConfigError.exit_code == DataError.exit_code == CheckpointError.exit_code == 2
    assert TrainingDiverged.exit_code == 1


# --- check_kwargs ------------------------------------------------------------------------------------


def _opt(params, lr=0.1, momentum=0.0, *, nesterov=False, weight_decay=0.0):
    return params


class _Layer:
    def __init__(self, units, alpha=0.3):
        self.units = units


def test_check_kwargs_accepts_known_options():
    check_kwargs(_opt, {"lr": 1.0, "momentum": 0.9, "nesterov": True}, "train.optimizer.config")
    check_kwargs(_opt, {}, "train.optimizer.config")
    check_kwargs(_Layer, {"alpha": 0.1}, "model.cnn.activation.config")


def test_check_kwargs_unknown_option_names_path_and_suggests():
    with pytest.raises(ConfigError) as info:
        check_kwargs(_opt, {"lr": 1.0, "momentun": 0.9}, "train.optimizer.config")
    assert str(info.value) == ("train.optimizer.config.momentun: unknown option; did you mean 'momentum'? "
                               "(allowed: lr, momentum, nesterov, weight_decay)")


def test_check_kwargs_ignore_and_self():
    with pytest.raises(ConfigError) as info:
        check_kwargs(_Layer, {"units": 3}, "model.cnn.activation.config", ignore=("units",))
    assert str(info.value) == "model.cnn.activation.config.units: unknown option (allowed: alpha)"
    with pytest.raises(ConfigError, match=r"\.self: unknown option"):
        check_kwargs(_Layer, {"self": 1}, "x")
    with pytest.raises(ConfigError, match=r"x\.a: unknown option \(it takes no options\)"):
        check_kwargs(lambda: None, {"a": 1}, "x")


def test_check_kwargs_is_lenient_when_it_cannot_know():
    check_kwargs(lambda **kw: None, {"anything": 1}, "x")  # **kwargs takes every option
    check_kwargs(object(), {"y": 1}, "x")  # no signature to check against
