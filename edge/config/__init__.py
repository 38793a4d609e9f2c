"""The YAML configuration: typed settings (``models.py``), a camera's source parsed once
(``source.py``), loading and the command line's overrides (``load.py``), and every problem as
one line naming the file and the key (``errors.py``)."""

from .errors import ConfigError
from .load import DEFAULT_CONFIG_PATH, default_config_path, load_config, parse_config, with_overrides
from .models import CAMERA_NAME_RE, LOG_LEVELS, AuthConfig, CameraConfig, Config, ServerConfig, TLSConfig
from .source import PIPE_PREFIX, SourceKind, SourceSpec

__all__ = [
    "CAMERA_NAME_RE",
    "DEFAULT_CONFIG_PATH",
    "LOG_LEVELS",
    "PIPE_PREFIX",
    "AuthConfig",
    "CameraConfig",
    "Config",
    "ConfigError",
    "ServerConfig",
    "SourceKind",
    "SourceSpec",
    "TLSConfig",
    "default_config_path",
    "load_config",
    "parse_config",
    "with_overrides",
]
