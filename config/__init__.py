"""Configuration: one frozen settings object read from the environment once."""

from config.settings import ConfigError as ConfigError
from config.settings import RateLimitSetting as RateLimitSetting
from config.settings import Settings as Settings
from config.settings import get_settings as get_settings
from config.settings import load_settings as load_settings
from config.settings import parse_rate_limit as parse_rate_limit

__all__ = ["ConfigError", "RateLimitSetting", "Settings", "get_settings", "load_settings", "parse_rate_limit"]
