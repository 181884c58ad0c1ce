"""Config: pydantic models per section, cross-field checks, YAML io and dotted overrides.

Importing this package never imports torch.
"""

from deepscope.config.io import apply_overrides, dump_yaml, load_config, read_yaml, to_dict
from deepscope.config.schema import ExperimentConfig

__all__ = ["ExperimentConfig", "apply_overrides", "dump_yaml", "load_config", "read_yaml", "to_dict"]
