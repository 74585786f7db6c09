"""Configuration read from the environment.

Every name here is part of the service's interface and is listed, with its
default, in the README. A bad value stops the start with a message that names
the variable, rather than surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from limits import parse_many

if TYPE_CHECKING:
    from app.alerts.channels import Channel
    from app.alerts.messages import MessageTemplate

INSTANCE_DIR = Path(__file__).resolve().parent / "instance"
DEFAULT_DATABASE_URL = f"sqlite:///{INSTANCE_DIR / 'daemon-health.db'}"


# Alert types a watcher can send; ALERT_EVENTS picks among them.
ALERT_TYPES = (
    "daemon.stale",
    "daemon.recovered",
    "daemon.unhealthy",
    "daemon.healthy_again",
    "daemon.deregistered",
    "daemon.error_rate_high",
    "daemon.error_rate_ok",
    "region.disrupted",
    "region.recovered",
)
# ALERT_ERROR_RATE_WINDOW: minutes or hours, from one minute (the buckets' resolution) to a day.
_ERROR_RATE_WINDOW = re.compile(r"^([1-9][0-9]{0,3})([mh])$")
_ERROR_RATE_WINDOW_MAX = timedelta(hours=24)


class ConfigError(RuntimeError):
    """The environment does not describe a runnable service."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    admin_api_keys: tuple[str, ...] = ()
    daemon_ttl_seconds: int = 60
    daemon_api_keys: tuple[str, ...] = ()
    read_api_keys: tuple[str, ...] = ()
    admin_rate_limit: str = "600 per minute"
    daemon_rate_limit: str = "120 per minute"
    read_rate_limit: str = "300 per minute"
    ratelimit_storage_uri: str = "memory://"
    ratelimit_key_prefix: str = "daemon-health"
    trusted_proxy_hops: int = 0
    max_content_length: int = 64 * 1024
    database_timeout_seconds: int = 3
    history_retention_days: int = 90
    alert_webhook_urls: tuple[str, ...] = ()
    alert_webhook_secret: str = ""
    alert_events: tuple[str, ...] = ALERT_TYPES
    alert_timeout_seconds: int = 5
    alert_max_attempts: int = 8
    watch_interval_seconds: int = 2
    metrics_api_keys: tuple[str, ...] = ()
    service_region: str | None = None
    # The error-rate alert (app/alerts/error_rate.py): off while the threshold is None.
    alert_error_rate_threshold: float | None = None
    alert_error_rate_window: timedelta = timedelta(minutes=15)
    alert_error_rate_min_tasks: int = 20
    # None: the alert's default share of the threshold.
    alert_error_rate_recovery: float | None = None
    alert_channels: tuple[Channel, ...] = ()
    alert_templates: tuple[MessageTemplate, ...] = ()

    def flask_config(self) -> dict:
        """The settings in the shape Flask and its extensions read."""
        return {
            "DATABASE_URL": self.database_url,
            "ADMIN_API_KEYS": self.admin_api_keys,
            "DAEMON_TTL_SECONDS": self.daemon_ttl_seconds,
            "DAEMON_API_KEYS": self.daemon_api_keys,
            "READ_API_KEYS": self.read_api_keys,
            "ADMIN_RATE_LIMIT": self.admin_rate_limit,
            "DAEMON_RATE_LIMIT": self.daemon_rate_limit,
            "READ_RATE_LIMIT": self.read_rate_limit,
            # Flask-Limiter's own settings (app/http/limiter.py): fixed windows in the
            # configured storage, counted in memory while that storage is down.
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_uri,
            "RATELIMIT_KEY_PREFIX": self.ratelimit_key_prefix,
            "RATELIMIT_STRATEGY": "fixed-window",
            "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
            "RATELIMIT_HEADERS_ENABLED": False,
            "TRUSTED_PROXY_HOPS": self.trusted_proxy_hops,
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "DATABASE_TIMEOUT_SECONDS": self.database_timeout_seconds,
            "HISTORY_RETENTION_DAYS": self.history_retention_days,
            "ALERT_WEBHOOK_URLS": self.alert_webhook_urls,
            "ALERT_WEBHOOK_SECRET": self.alert_webhook_secret,
            "ALERT_EVENTS": self.alert_events,
            "ALERT_TIMEOUT_SECONDS": self.alert_timeout_seconds,
            "ALERT_MAX_ATTEMPTS": self.alert_max_attempts,
            "WATCH_INTERVAL_SECONDS": self.watch_interval_seconds,
            "METRICS_API_KEYS": self.metrics_api_keys,
            "SERVICE_REGION": self.service_region,
            "ALERT_ERROR_RATE_THRESHOLD": self.alert_error_rate_threshold,
            "ALERT_ERROR_RATE_WINDOW": self.alert_error_rate_window,
            "ALERT_ERROR_RATE_MIN_TASKS": self.alert_error_rate_min_tasks,
            "ALERT_ERROR_RATE_RECOVERY": self.alert_error_rate_recovery,
            "ALERT_CHANNELS": self.alert_channels,
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
    keys = _scoped_keys(env, "ADMIN_API_KEY")
    if not keys:
        raise ConfigError(
            "ADMIN_API_KEY is not set: refusing to start without an admin key. "
            "Set ADMIN_API_KEY (comma-separate several keys to rotate them)."
        )
    return keys


def _scoped_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    keys = _list(env, name)
    if any(len(k) < 16 for k in keys):
        raise ConfigError(f"{name}: every key must be at least 16 characters long")
    return keys


def _distinct_kinds(**kinds: tuple[str, ...]) -> None:
    # One key in two lists would make its rights depend on which list is read first.
    seen: dict[str, str] = {}
    for name, keys in kinds.items():
        for key in keys:
            if seen.get(key) == name:
                raise ConfigError(f"{name} lists a key twice")
            if key in seen:
                raise ConfigError(f"{seen[key]} and {name} share a key: give each kind its own")
            seen[key] = name


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _webhooks(env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    urls = _list(env, "ALERT_WEBHOOK_URLS")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"ALERT_WEBHOOK_URLS: {url!r} is not an http(s) URL")
    secret = env.get("ALERT_WEBHOOK_SECRET", "").strip()
    if urls and len(secret) < 16:
        raise ConfigError(
            "ALERT_WEBHOOK_SECRET must be set (at least 16 characters) when ALERT_WEBHOOK_URLS is: "
            "receivers verify every alert's signature with it"
        )
    return urls, secret


def _alert_events(env: Mapping[str, str]) -> tuple[str, ...]:
    chosen = _list(env, "ALERT_EVENTS") or ALERT_TYPES
    unknown = sorted(set(chosen) - set(ALERT_TYPES))
    if unknown:
        raise ConfigError(f"ALERT_EVENTS: unknown {', '.join(unknown)}; known: {', '.join(ALERT_TYPES)}")
    return chosen


def _fraction(env: Mapping[str, str], name: str, *, zero_allowed: bool) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low_ok = value >= 0 if zero_allowed else value > 0
    if not (low_ok and value <= 1):  # also refuses nan
        bounds = "from 0" if zero_allowed else "above 0"
        raise ConfigError(f"{name} must be a fraction {bounds} up to 1 (e.g. 0.05 for 5 %), got {raw!r}")
    return value


def _error_rate_window(env: Mapping[str, str], default: timedelta) -> timedelta:
    raw = env.get("ALERT_ERROR_RATE_WINDOW", "").strip()
    if not raw:
        return default
    match = _ERROR_RATE_WINDOW.fullmatch(raw)
    window = timedelta(**{"minutes" if match[2] == "m" else "hours": int(match[1])}) if match else None
    if window is None or window > _ERROR_RATE_WINDOW_MAX:
        raise ConfigError(
            f"ALERT_ERROR_RATE_WINDOW must be minutes or hours from 1m to 24h (e.g. 15m, 1h), got {raw!r}"
        )
    return window


def _error_rate_levels(env: Mapping[str, str]) -> tuple[float | None, float | None]:
    """The threshold (None: the alert is off) and the recovery level below it."""
    threshold = _fraction(env, "ALERT_ERROR_RATE_THRESHOLD", zero_allowed=False)
    recovery = _fraction(env, "ALERT_ERROR_RATE_RECOVERY", zero_allowed=True)
    if recovery is not None and threshold is None:
        raise ConfigError("ALERT_ERROR_RATE_RECOVERY is set but ALERT_ERROR_RATE_THRESHOLD is not")
    if recovery is not None and threshold is not None and recovery >= threshold:
        raise ConfigError(
            f"ALERT_ERROR_RATE_RECOVERY ({recovery}) must be below ALERT_ERROR_RATE_THRESHOLD ({threshold}), "
            "or the alert would recover as soon as it fires"
        )
    return threshold, recovery
def _alert_channels(env: Mapping[str, str], alert_events: tuple[str, ...]) -> tuple[Channel, ...]:
    # Imported here, not at the top: app.alerts reads this module's Settings.
    from app.alerts.channels import ChannelError, parse

    try:
        channels = parse(env.get("ALERT_CHANNELS", ""))
    except ChannelError as exc:
        raise ConfigError(f"ALERT_CHANNELS: {exc}") from None
    for channel in channels:
        # A filter naming a type that never fires would be a channel silently left out.
        unknown = sorted((channel.events or frozenset()) - set(alert_events))
        if unknown:
            why = "is not an alert type" if set(unknown) - set(ALERT_TYPES) else "ALERT_EVENTS leaves out"
            raise ConfigError(
                f"ALERT_CHANNELS: {channel.redacted} filters on {', '.join(unknown)}, which {why}; "
                f"ALERT_EVENTS: {', '.join(alert_events)}"
            )
    return channels


def _alert_templates(env: Mapping[str, str]) -> tuple[MessageTemplate, ...]:
    from app.alerts.messages import TemplateError, load  # see _alert_channels

    directory = env.get("ALERT_TEMPLATES_DIR", "").strip()
    if not directory:
        return ()
    try:
        return load(directory)
    except (TemplateError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ALERT_TEMPLATES_DIR: {exc}") from None


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    try:
        items = parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} must look like '600 per minute' or '10/second', got {value!r}"
        ) from None
    # limits reads "0/minute" as a limit every request breaks: the kind could call nothing.
    if any(item.amount < 1 for item in items):
        raise ConfigError(f"{name} must allow at least 1 request per window, got {value!r}")
    return value


def _ratelimit_storage_uri(env: Mapping[str, str], default: str) -> str:
    # Imported here, like the region rule: the limiter module needs the app package.
    from app.http.limiter import REDIS_SCHEMES

    value = env.get("RATELIMIT_STORAGE_URI", "").strip() or default
    if value != "memory://" and not value.startswith(REDIS_SCHEMES):
        # Only the scheme is quoted: the rest of a Redis URL may hold its password.
        got = f"scheme {value.split('://', 1)[0]!r}" if "://" in value else "a value without a scheme"
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI must be memory:// or a redis://, rediss:// or redis+unix:// URL, got {got}"
        )
    return value


def _service_region(env: Mapping[str, str]) -> str | None:
    # Imported here: the app package imports this module while it loads.
    from app.registry.schemas import region_error

    value = env.get("SERVICE_REGION", "").strip()
    if not value:
        return None
    problem = region_error(value)
    if problem:
        raise ConfigError(f"SERVICE_REGION {problem}, got {value!r}")
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
    urls, secret = _webhooks(env)
    keys = {
        "ADMIN_API_KEY": _api_keys(env),
        "DAEMON_API_KEYS": _scoped_keys(env, "DAEMON_API_KEYS"),
        "READ_API_KEYS": _scoped_keys(env, "READ_API_KEYS"),
        "METRICS_API_KEY": _scoped_keys(env, "METRICS_API_KEY"),
    }
    _distinct_kinds(**keys)
    error_rate_threshold, error_rate_recovery = _error_rate_levels(env)
    alert_events = _alert_events(env)
    return Settings(
        database_url=database_url_from_env(env),
        admin_api_keys=keys["ADMIN_API_KEY"],
        daemon_api_keys=keys["DAEMON_API_KEYS"],
        read_api_keys=keys["READ_API_KEYS"],
        daemon_ttl_seconds=_int(env, "DAEMON_TTL_SECONDS", defaults.daemon_ttl_seconds, minimum=1),
        admin_rate_limit=_rate_limit(env, "ADMIN_RATE_LIMIT", defaults.admin_rate_limit),
        daemon_rate_limit=_rate_limit(env, "DAEMON_RATE_LIMIT", defaults.daemon_rate_limit),
        read_rate_limit=_rate_limit(env, "READ_RATE_LIMIT", defaults.read_rate_limit),
        ratelimit_storage_uri=_ratelimit_storage_uri(env, defaults.ratelimit_storage_uri),
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
        alert_webhook_urls=urls,
        alert_webhook_secret=secret,
        alert_events=alert_events,
        alert_timeout_seconds=_int(
            env, "ALERT_TIMEOUT_SECONDS", defaults.alert_timeout_seconds, minimum=1
        ),
        alert_max_attempts=_int(env, "ALERT_MAX_ATTEMPTS", defaults.alert_max_attempts, minimum=1),
        watch_interval_seconds=_int(
            env, "WATCH_INTERVAL_SECONDS", defaults.watch_interval_seconds, minimum=1
        ),
        metrics_api_keys=keys["METRICS_API_KEY"],
        service_region=_service_region(env),
        alert_error_rate_threshold=error_rate_threshold,
        alert_error_rate_window=_error_rate_window(env, defaults.alert_error_rate_window),
        alert_error_rate_min_tasks=_int(
            env, "ALERT_ERROR_RATE_MIN_TASKS", defaults.alert_error_rate_min_tasks, minimum=1
        ),
        alert_error_rate_recovery=error_rate_recovery,
        alert_channels=_alert_channels(env, alert_events),
        alert_templates=_alert_templates(env),
    )
