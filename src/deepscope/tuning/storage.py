"""Where a study lives (storage URL → Optuna storage), and its sampler and pruner from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepscope.config.tune import TuneConfig, TuneStage
from deepscope.errors import ConfigError

__all__ = ["display_url", "make_pruner", "make_sampler", "open_storage", "storage_file", "storage_url"]


def storage_url(tune: TuneConfig, folder: Path) -> str:
    """``tune.storage``, or a SQLite file in the study folder."""
    return tune.storage or f"sqlite:///{folder / 'study.db'}"


def display_url(url: str) -> str:
    """The URL as logged and written to ``study.json`` and reports: a database password masked."""
    if storage_file(url) is not None:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can read: the storage will say so
        return url


def storage_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` or ``journal:///`` URL (``sqlite:////abs`` is absolute); ``None`` for a server."""
    for scheme in ("sqlite:///", "journal:///"):
        if url.startswith(scheme):
            return Path(url[len(scheme):])
    return None


def open_storage(url: str) -> Any:
    """An Optuna storage for the URL.

    Raises:
        ConfigError: a folder that cannot be created, a database driver that is not installed, a server
            that cannot be reached.
    """
    import optuna

    path = storage_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"tune.storage: cannot create the folder of {path} ({exc.strerror})") from None
    if url.startswith("journal:///"):
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:  # a corrupt or unreadable journal
            raise ConfigError(f"tune.storage: {path} cannot be read as an Optuna journal "
                              f"({type(exc).__name__}: {exc})") from None
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several workers wait for SQLite's lock
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"tune.storage: {url.split('://')[0]} needs the Python package '{exc.name}' "
                          f"(pip install {exc.name})") from None
    except Exception as exc:  # sqlalchemy's errors: bad URL, server down, not a database file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"tune.storage: cannot open {display_url(url)} ({type(exc).__name__}: {first})") from None


def make_sampler(tune: TuneConfig, stage: TuneStage, seed: int, where: str, worker: int = 0) -> Any:
    """The sampler ``tune.sampler`` names, seeded with ``seed + worker``: the k-th worker of a study draws
    its own sequence (but the grid, which every worker must shuffle alike)."""
    import optuna

    from deepscope.tuning.space import grid_space

    name = tune.sampler
    if name == "grid":
        # its points are stored as indices into its shuffled list: every worker shuffles with the same seed
        return _grid_sampler()(grid_space(stage.space, where), seed=seed)
    seed = seed + worker
    if name == "tpe":
        # constant liar: running trials count as bad guesses, so parallel workers spread out
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        choices = [p for p, e in stage.space.items() if e.choice is not None]
        if choices:
            raise ConfigError(f"tune.sampler cmaes: searches float and int ranges only; {where}."
                              f"{choices[0]} is a choice (use tpe, or a range)")
    return optuna.samplers.CmaEsSampler(seed=seed)


def _grid_sampler() -> type:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, without its ``study.stop()`` once the grid is covered: that works only inside
        ``study.optimize``, and here the workers stop at the study's ``n_trials`` (a longer budget than the
        grid draws some points again)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return GridSampler


def make_pruner(tune: TuneConfig, epochs: int) -> Any:
    """The pruner ``tune.pruner`` names (``none``: no trial is stopped early)."""
    import optuna

    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials,
                                           n_warmup_steps=tune.pruner_warmup_epochs)
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(int(epochs), 1))
    return optuna.pruners.NopPruner()
