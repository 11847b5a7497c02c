"""The model catalog: bundled data, user config, and the in-memory view the router reads."""

from crossroads.catalog.catalog import Catalog, Model
from crossroads.catalog.loader import ConfigError, load_catalog, read_config

__all__ = ["Catalog", "ConfigError", "Model", "load_catalog", "read_config"]
