"""Configuration: one frozen settings object read from the environment once."""

from config.settings import (
    ConfigError,
    RateLimitSetting,
    Settings,
    get_settings,
    load_settings,
    parse_rate_limit,
)

__all__ = ["ConfigError", "RateLimitSetting", "Settings", "get_settings", "load_settings", "parse_rate_limit"]
