"""Configuration read from the environment.

Every name here is part of the service's interface and is listed, with its
default, in the README. A bad value stops the start with a message that names
the variable, rather than surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from limits import parse_many

INSTANCE_DIR = Path(__file__).resolve().parent / "instance"
DEFAULT_DATABASE_URL = f"sqlite:///{INSTANCE_DIR / 'daemon-health.db'}"


class ConfigError(RuntimeError):
    """The environment does not describe a runnable service."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    admin_api_keys: tuple[str, ...] = ()
    daemon_ttl_seconds: int = 60
    admin_rate_limit: str = "600 per minute"
    ratelimit_storage_uri: str = "memory://"
    ratelimit_key_prefix: str = "daemon-health"
    trusted_proxy_hops: int = 0
    max_content_length: int = 64 * 1024
    database_timeout_seconds: int = 3
    history_retention_days: int = 90

    def flask_config(self) -> dict:
        """The settings in the shape Flask and its extensions read."""
        return {
            "DATABASE_URL": self.database_url,
            "ADMIN_API_KEYS": self.admin_api_keys,
            "DAEMON_TTL_SECONDS": self.daemon_ttl_seconds,
            "ADMIN_RATE_LIMIT": self.admin_rate_limit,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_uri,
            "RATELIMIT_KEY_PREFIX": self.ratelimit_key_prefix,
            "TRUSTED_PROXY_HOPS": self.trusted_proxy_hops,
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "DATABASE_TIMEOUT_SECONDS": self.database_timeout_seconds,
            "HISTORY_RETENTION_DAYS": self.history_retention_days,
        }


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in env.get("ADMIN_API_KEY", "").split(",") if k.strip())
    if not keys:
        raise ConfigError(
            "ADMIN_API_KEY is not set: refusing to start without an admin key. "
            "Set ADMIN_API_KEY (comma-separate several keys to rotate them)."
        )
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ConfigError("ADMIN_API_KEY: every key must be at least 16 characters long")
    return keys


def _rate_limit(env: Mapping[str, str], default: str) -> str:
    value = env.get("ADMIN_RATE_LIMIT", "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"ADMIN_RATE_LIMIT must look like '600 per minute' or '10/second', got {value!r}"
        ) from None
    return value


def database_url_from_env(env: Mapping[str, str]) -> str:
    """DATABASE_URL with the psycopg 3 driver named; the SQLite file by default."""
    url = env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    # Heroku-style URLs name no driver; this service is built for psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    defaults = Settings()
    return Settings(
        database_url=database_url_from_env(env),
        admin_api_keys=_api_keys(env),
        daemon_ttl_seconds=_int(env, "DAEMON_TTL_SECONDS", defaults.daemon_ttl_seconds, minimum=1),
        admin_rate_limit=_rate_limit(env, defaults.admin_rate_limit),
        ratelimit_storage_uri=env.get("RATELIMIT_STORAGE_URI", "").strip()
        or defaults.ratelimit_storage_uri,
        ratelimit_key_prefix=env.get("RATELIMIT_KEY_PREFIX", "").strip()
        or defaults.ratelimit_key_prefix,
        trusted_proxy_hops=_int(env, "TRUSTED_PROXY_HOPS", defaults.trusted_proxy_hops, minimum=0),
        max_content_length=_int(env, "MAX_CONTENT_LENGTH", defaults.max_content_length, minimum=1024),
        database_timeout_seconds=_int(
            env, "DATABASE_TIMEOUT_SECONDS", defaults.database_timeout_seconds, minimum=1
        ),
        history_retention_days=_int(
            env, "HISTORY_RETENTION_DAYS", defaults.history_retention_days, minimum=1
        ),
    )
