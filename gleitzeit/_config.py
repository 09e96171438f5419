"""Client configuration: explicit argument > environment variable > default."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Final

from .core.errors import ConfigurationError

__all__ = [
    "DEFAULT_OLLAMA_URL",
    "DEFAULT_PERSISTENCE",
    "PERSISTENCE_BACKENDS",
    "default_db_path",
    "resolve_option",
    "setup_logging",
]

PERSISTENCE_BACKENDS: Final = ("memory", "sqlite", "journal", "redis")
ISOLATION_MODES: Final = ("process", "inline")


class _Default(str):
    """A default value that an environment variable may override.

    It equals the plain string, so signatures show the documented default,
    yet the client can tell it apart from the same value passed explicitly.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(str(self))


DEFAULT_PERSISTENCE: Final = _Default("sqlite")
DEFAULT_OLLAMA_URL: Final = _Default("http://localhost:11434")


def resolve_option(value: str | None, env: str) -> str | None:
    """``value`` if given explicitly, else the environment variable, else the default."""
    if value is not None and not isinstance(value, _Default):
        return value
    from_env = os.environ.get(env)
    if from_env:
        return from_env
    return None if value is None else str(value)


def unavailable_backends() -> dict[str, str]:
    """Why a persistence backend cannot be used here, shown beside its name."""
    # Looked up, not imported: importing redis-py costs every client ~10 MB.
    if importlib.util.find_spec("redis") is None:
        return {"redis": "needs gleitzeit[redis]"}
    return {}


def check_choice(
    name: str,
    value: str,
    valid: tuple[str, ...],
    env: str | None = None,
    notes: dict[str, str] | None = None,
) -> str:
    """Return ``value`` if valid, else raise CONFIGURATION_ERROR listing the valid ones.

    ``notes`` marks choices that exist but cannot be used here (and why).
    """
    if value in valid:
        return value
    origin = f" (from ${env})" if env and os.environ.get(env) == value else ""
    notes = notes or {}
    listed = ", ".join(f"{v} ({notes[v]})" if v in notes else v for v in valid)
    raise ConfigurationError(
        f"Unknown {name} {value!r}{origin}; use one of: {listed}.",
        data={"option": name, "value": value, "valid": list(valid)},
    )


def default_db_path() -> Path:
    """``~/.gleitzeit/gleitzeit.db``."""
    return Path.home() / ".gleitzeit" / "gleitzeit.db"


def setup_logging(debug: bool) -> None:
    """Apply ``debug=True`` or ``GLEITZEIT_LOG_LEVEL`` to the ``gleitzeit`` logger."""
    logger = logging.getLogger("gleitzeit")
    level_name = os.environ.get("GLEITZEIT_LOG_LEVEL")
    level = logging.DEBUG if debug else None
    if level is None and level_name:
        level = logging.getLevelName(level_name.upper())
        if not isinstance(level, int):
            raise ConfigurationError(
                f"Unknown log level {level_name!r} (from $GLEITZEIT_LOG_LEVEL); use DEBUG, "
                "INFO, WARNING or ERROR.",
                data={"option": "GLEITZEIT_LOG_LEVEL", "value": level_name},
            )
    if level is None:
        return
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
