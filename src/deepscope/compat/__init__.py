"""Compatibility with the tools deepscope replaces: DeepCalo's ``ModelContainer`` and
``get_default_params`` (:mod:`deepscope.compat.deepcalo`)."""

from deepscope.compat.deepcalo import ModelContainer, get_default_params

__all__ = ["ModelContainer", "get_default_params"]
