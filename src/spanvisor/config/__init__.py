"""Configuration: one declarative table per part, read from the environment and TOML.

Each :class:`Setting` names its environment variable, its TOML key, its type
and its default. The core's table is :data:`~spanvisor.config.table.CORE_SETTINGS`;
the receiver and every sink declare their own next to their code and are found
through entry points (:func:`~spanvisor.config.loading.plugin_settings`), so
this package imports no other part of spanvisor and ``spanvisor check`` still
shows everything in one table. Precedence: environment, then the TOML file
(``SPANVISOR_CONFIG``), then the default. A bad value raises one
:class:`ConfigError` naming the setting and what it accepts.

This module is the public face: ``from spanvisor.config import Config, Setting, p_duration``.
"""

from spanvisor.config.loading import Config, mask, plugin_settings, read_toml
from spanvisor.config.parsers import (
    ConfigError,
    Parser,
    Setting,
    Unaccepted,
    is_http_url,
    p_bool,
    p_choice,
    p_duration,
    p_float,
    p_int,
    p_int_map,
    p_list,
    p_opt_str,
    p_percents,
    p_pos_float,
    p_pos_int,
    p_ratio,
    p_ratios,
    p_size,
    p_str,
    url_origin,
)
from spanvisor.config.table import CORE_SETTINGS, DEFAULT_STANDS_IN, default_data_dir, shown_default

__all__ = [
    "CORE_SETTINGS",
    "DEFAULT_STANDS_IN",
    "Config",
    "ConfigError",
    "Parser",
    "Setting",
    "Unaccepted",
    "default_data_dir",
    "is_http_url",
    "mask",
    "p_bool",
    "p_choice",
    "p_duration",
    "p_float",
    "p_int",
    "p_int_map",
    "p_list",
    "p_opt_str",
    "p_percents",
    "p_pos_float",
    "p_pos_int",
    "p_ratio",
    "p_ratios",
    "p_size",
    "p_str",
    "plugin_settings",
    "read_toml",
    "shown_default",
    "url_origin",
]
