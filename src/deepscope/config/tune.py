"""``tune``: a hyperparameter search over the rest of the config (``deepscope tune``, docs/tune.md).

The search space names config keys by their dotted paths; each entry is one of three kinds::

    tune:
      space:
        train.optimizer.config.lr: {float: [1.0e-5, 1.0e-2], log: true}
        model.cnn.block_depths: {choice: [[1, 1], [1, 2, 2]]}
        train.batch_size: {int: [32, 256], step: 32}
        train.lr_schedule.config.step_size: {int: [2, 8], when: {train.lr_schedule.name: cyclic}}
      n_trials: 40
      sampler: tpe
      pruner: median

Kept torch- and Optuna-free: ``deepscope validate`` checks the section without importing either.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from deepscope.config.common import StrictModel, fail

__all__ = ["SAMPLERS", "PRUNERS", "SpaceEntry", "TuneStage", "TuneConfig", "tune_metric"]

SAMPLERS = ("tpe", "gp", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
DEFAULT_TRIALS = 20


class SpaceEntry(StrictModel):
    """One searched key: a float or int range, or a choice among values; ``when`` makes it conditional."""

    float_range: list[float] | None = Field(None, alias="float", description="[low, high]: a float in the range")
    int_range: list[int] | None = Field(None, alias="int", description="[low, high]: an integer in the range, both "
                                                                       "ends included")
    choice: list[Any] | None = Field(None, description="one of these values (any YAML value: numbers, strings, "
                                                       "lists such as block depths, mappings)")
    log: bool = Field(False, description="sample the range on a log scale (low > 0)")
    step: float | None = Field(None, gt=0, description="only multiples of step above low (int default: 1)")
    when: dict[str, Any] | None = Field(
        None, description="sample this key only when each named key (an earlier entry of the space, or a key of the "
                          "config) has the given value, or one of the values of a list")

    model_config = {**StrictModel.model_config, "populate_by_name": True}

    @field_validator("float_range", "int_range")
    @classmethod
    def _range(cls, value: list[Any] | None) -> list[Any] | None:
        if value is None:
            return value
        if len(value) != 2:
            raise fail("range", f"found {value!r}; expected [low, high]")
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise fail("range", f"found [{low}, {high}]; expected finite low < high")
        return value

    @field_validator("choice")
    @classmethod
    def _choices(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and not value:
            raise fail("choice", "found an empty list; expected at least one value")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceEntry:
        kinds = [k for k, v in (("float", self.float_range), ("int", self.int_range), ("choice", self.choice))
                 if v is not None]
        if len(kinds) != 1:
            found = " and ".join(kinds) if kinds else "none of them"
            raise fail("space_kind", f"found {found}; expected exactly one of float: [low, high], int: [low, high] "
                                     "or choice: [values]")
        if self.choice is not None and (self.log or self.step is not None):
            raise fail("space_kind", "log and step are for float and int ranges, not choice")
        if self.log and self.step is not None:
            raise fail("space_kind", "log and step cannot be combined (Optuna samples either on a log scale or on "
                                     "a grid of steps)")
        rng = self.float_range or self.int_range
        if self.log and rng is not None and rng[0] <= 0:
            raise fail("space_kind", f"log: true needs low > 0 (found low {rng[0]})")
        if self.int_range is not None and self.step is not None and self.step != int(self.step):
            raise fail("space_kind", f"step {self.step} of an int range must be a whole number")
        return self

    @model_serializer(mode="plain")
    def _as_written(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.kind: self.float_range or self.int_range or self.choice}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        if self.when is not None:
            out["when"] = self.when
        return out

    @property
    def kind(self) -> str:
        return "float" if self.float_range is not None else "int" if self.int_range is not None else "choice"


class TuneStage(StrictModel):
    """One stage of a staged search: its own space and trials; the keys found by earlier stages are fixed."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$", max_length=60,
                      description="the stage's folder, <study folder>/stages/<name>, and its study <study>.<name>")
    space: dict[str, SpaceEntry] = Field(description="the keys this stage searches (as tune.space)")
    n_trials: int = Field(ge=1, description="the stage's total number of finished trials")
    timeout: float | None = Field(None, gt=0, description="seconds after which a worker starts no new trial of "
                                                          "this stage")


class TuneConfig(StrictModel):
    """The search: space, budget, objective, sampler, pruner, storage (docs/tune.md)."""

    space: dict[str, SpaceEntry] = Field(
        default_factory=dict, description="dotted config path -> {float: [low, high]} or {int: [low, high]} (with "
                                          "log, step), or {choice: [...]}; each may have when: {path: value}")
    n_trials: int | None = Field(
        None, ge=1, description="the study's total number of finished trials (complete, pruned or failed): every "
                                "worker stops once the study holds that many; default 20 (with stages: each stage's)")
    timeout: float | None = Field(None, gt=0, description="seconds after which this worker starts no new trial (over "
                                                          "all stages)")
    study: str | None = Field(None, pattern=STUDY_NAME, max_length=120,
                              description="the study's name (default: the config's name); its folder is "
                                          "<log.dir>/studies/<study>")
    storage: str | None = Field(
        None, description="where the trials are kept: sqlite:///FILE, journal:///FILE (a shared filesystem, many "
                          "workers) or an RDB URL (postgresql://..., mysql://...); default: sqlite in the study "
                          "folder")
    metric: str | None = Field(None, description="what a trial is judged by: val_<metric> or val_loss (a bare metric "
                                                 "name means val_<name>); default: the last of train.metrics, else "
                                                 "val_loss")
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="default: maximize for metrics where higher is better (auc, accuracy, psnr, ...), else "
                          "minimize")
    sampler: Literal["tpe", "gp", "random", "grid", "cmaes"] = Field(
        "tpe", description="tpe (Bayesian, default), gp (Gaussian process, DeepCalo's skopt), random, grid (every "
                           "combination; int/choice keys, or float keys with a step), cmaes (float/int keys)")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stop unpromising trials early from their validation value after each epoch")
    pruner_startup_trials: int = Field(5, ge=0, description="median: trials that finish before any is pruned")
    pruner_warmup_epochs: int = Field(1, ge=0, description="median: epochs of each trial before it can be pruned")
    seed: int | None = Field(None, ge=0, description="the sampler's seed (default: the config's seed); worker k of "
                                                      "a study uses seed + k")
    stages: list[TuneStage] = Field(
        default_factory=list, description="a staged search (DeepFocus): each stage searches its own space with the "
                                          "best keys of the earlier stages fixed; replaces space and n_trials")
    stale_after: float = Field(600.0, ge=90, description="seconds without a heartbeat after which a running trial "
                                                        "of another host counts as dead (failed and re-queued); "
                                                        "on this host a dead process is seen at once. At least "
                                                        "90: trials beat every 30 s")

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme = value.partition("://")[0]
        if not scheme or "://" not in value:
            raise fail("storage", f"found {value!r}; expected sqlite:///FILE, journal:///FILE or an RDB URL such as "
                                  "postgresql://user@host/db")
        if scheme in ("sqlite", "journal") and not value[len(scheme) + 3:].lstrip("/"):
            raise fail("storage", f"found {value!r}; expected a file after {scheme}:///")
        return value

    @model_validator(mode="after")
    def _stages_or_space(self) -> TuneConfig:
        if self.stages and self.space:
            raise fail("stages", "give either tune.space or tune.stages (each stage has its own space), not both")
        if self.stages and self.n_trials is not None:
            raise fail("stages", "tune.n_trials is not used with tune.stages: give each stage its n_trials")
        if not self.stages and not self.space:
            raise fail("space", "tune.space is empty; name at least one key to search, e.g. "
                                "train.lr: {float: [1.0e-4, 1.0e-1], log: true}")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise fail("stages", f"stage names must differ (found {', '.join(names)})")
        return self

    def stage_list(self) -> list[TuneStage]:
        """The stages to run: ``stages``, or one unnamed stage made of ``space`` and ``n_trials``."""
        if self.stages:
            return list(self.stages)
        return [TuneStage.model_construct(name="", space=self.space, n_trials=self.n_trials or DEFAULT_TRIALS,
                                          timeout=None)]


def tune_metric(cfg: Any) -> str:
    """The validation value a study judges trials by: ``tune.metric`` (``auc`` means ``val_auc``), else
    the last of ``train.metrics``, else ``val_loss`` (DeepCalo's choice)."""
    given = cfg.tune.metric if cfg.tune is not None else None
    if given:
        return given if given.startswith(("val_", "train_")) else f"val_{given}"
    return f"val_{cfg.train.metrics[-1]}" if cfg.train.metrics else "val_loss"
