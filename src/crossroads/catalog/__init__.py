"""The model catalog: bundled data, user config, and the in-memory view the router reads."""

from crossroads.catalog.catalog import Catalog, Model
from crossroads.catalog.loader import load_catalog, read_config
from crossroads.errors import ConfigError

__all__ = ["Catalog", "ConfigError", "Model", "load_catalog", "read_config"]
