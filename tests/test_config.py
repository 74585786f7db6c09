"""Settings come from the environment; a bad one stops the start with its name."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from config import DEFAULT_DATABASE_URL, ConfigError, Settings, settings_from_env

KEY = "k" * 32
ROOT = Path(__file__).resolve().parent.parent


def test_defaults():
    settings = settings_from_env({"ADMIN_API_KEY": KEY})
    assert settings == Settings(admin_api_keys=(KEY,))
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.daemon_ttl_seconds == 60
    assert settings.admin_rate_limit == "600 per minute"
    assert settings.ratelimit_storage_uri == "memory://"
    assert settings.trusted_proxy_hops == 0
    assert settings.max_content_length == 64 * 1024


def test_every_variable_is_read():
    settings = settings_from_env(
        {
            "ADMIN_API_KEY": f" {KEY} , {'n' * 20} ",
            "DATABASE_URL": "postgresql://u@db/health",
            "DAEMON_TTL_SECONDS": "90",
            "ADMIN_RATE_LIMIT": "10/second",
            "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/1",
            "RATELIMIT_KEY_PREFIX": "dh",
            "TRUSTED_PROXY_HOPS": "1",
            "MAX_CONTENT_LENGTH": "2048",
            "DATABASE_TIMEOUT_SECONDS": "7",
            "HISTORY_RETENTION_DAYS": "30",
            "ALERT_ERROR_RATE_THRESHOLD": "0.05",
            "ALERT_ERROR_RATE_WINDOW": "1h",
            "ALERT_ERROR_RATE_MIN_TASKS": "100",
            "ALERT_ERROR_RATE_RECOVERY": "0",
            "SERVICE_REGION": "eu-west-1",
        }
    )
    assert settings == Settings(
        database_url="postgresql+psycopg://u@db/health",
        admin_api_keys=(KEY, "n" * 20),
        daemon_ttl_seconds=90,
        admin_rate_limit="10/second",
        ratelimit_storage_uri="redis://127.0.0.1:6379/1",
        ratelimit_key_prefix="dh",
        trusted_proxy_hops=1,
        max_content_length=2048,
        database_timeout_seconds=7,
        history_retention_days=30,
        alert_error_rate_threshold=0.05,
        alert_error_rate_window=timedelta(hours=1),
        alert_error_rate_min_tasks=100,
        alert_error_rate_recovery=0.0,
        service_region="eu-west-1",
    )


def test_the_error_rate_alert_is_off_by_default_and_watches_15_minutes():
    settings = settings_from_env({"ADMIN_API_KEY": KEY})
    assert settings.alert_error_rate_threshold is None
    assert settings.alert_error_rate_window == timedelta(minutes=15)
    assert settings.alert_error_rate_min_tasks == 20
    assert {"daemon.error_rate_high", "daemon.error_rate_ok"} <= set(settings.alert_events)


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_missing_admin_key_refuses_to_start(value):
    with pytest.raises(ConfigError, match="ADMIN_API_KEY is not set"):
        settings_from_env({"ADMIN_API_KEY": value})


def test_short_admin_key_is_refused():
    with pytest.raises(ConfigError, match="at least 16 characters"):
        settings_from_env({"ADMIN_API_KEY": "short"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DAEMON_TTL_SECONDS", "sixty", "DAEMON_TTL_SECONDS must be an integer"),
        ("DAEMON_TTL_SECONDS", "0", "DAEMON_TTL_SECONDS must be at least 1"),
        ("TRUSTED_PROXY_HOPS", "-1", "TRUSTED_PROXY_HOPS must be at least 0"),
        ("MAX_CONTENT_LENGTH", "1.5", "MAX_CONTENT_LENGTH must be an integer"),
        ("ADMIN_RATE_LIMIT", "lots", "ADMIN_RATE_LIMIT must look like"),
        ("DAEMON_RATE_LIMIT", "lots", "DAEMON_RATE_LIMIT must look like"),
        ("READ_RATE_LIMIT", "7 per fortnight", "READ_RATE_LIMIT must look like"),
        ("READ_RATE_LIMIT", "0/minute", "READ_RATE_LIMIT must allow at least 1 request per window"),
        ("DAEMON_RATE_LIMIT", "100/minute;0/hour", "DAEMON_RATE_LIMIT must allow at least 1 request"),
        ("DAEMON_API_KEYS", "long-enough-daemon-key,short", "DAEMON_API_KEYS: every key must be at least 16"),
        ("READ_API_KEYS", "short", "READ_API_KEYS: every key must be at least 16"),
        ("METRICS_API_KEY", "short", "METRICS_API_KEY: every key must be at least 16"),
        ("DAEMON_API_KEYS", KEY, "ADMIN_API_KEY and DAEMON_API_KEYS share a key"),
        ("DAEMON_API_KEYS", f"{'d' * 20},{'d' * 20}", "DAEMON_API_KEYS lists a key twice"),
        ("READ_API_KEYS", f"{'r' * 20}, {'r' * 20}", "READ_API_KEYS lists a key twice"),
        ("ALERT_ERROR_RATE_THRESHOLD", "0", "ALERT_ERROR_RATE_THRESHOLD must be a fraction above 0 up to 1"),
        ("ALERT_ERROR_RATE_THRESHOLD", "5%", "ALERT_ERROR_RATE_THRESHOLD must be a fraction"),
        ("ALERT_ERROR_RATE_THRESHOLD", "1.5", "ALERT_ERROR_RATE_THRESHOLD must be a fraction"),
        ("ALERT_ERROR_RATE_THRESHOLD", "nan", "ALERT_ERROR_RATE_THRESHOLD must be a fraction"),
        ("ALERT_ERROR_RATE_WINDOW", "15", "ALERT_ERROR_RATE_WINDOW must be minutes or hours from 1m to 24h"),
        ("ALERT_ERROR_RATE_WINDOW", "2d", "ALERT_ERROR_RATE_WINDOW must be minutes or hours"),
        ("ALERT_ERROR_RATE_WINDOW", "25h", "ALERT_ERROR_RATE_WINDOW must be minutes or hours"),
        ("ALERT_ERROR_RATE_MIN_TASKS", "0", "ALERT_ERROR_RATE_MIN_TASKS must be at least 1"),
        ("ALERT_ERROR_RATE_RECOVERY", "0.01", "ALERT_ERROR_RATE_RECOVERY is set but ALERT_ERROR_RATE_THRESHOLD is not"),
        ("ALERT_EVENTS", "daemon.error_rate", "ALERT_EVENTS: unknown daemon.error_rate"),
        ("SERVICE_REGION", "eu west", "SERVICE_REGION must be 1-64 characters"),
        ("SERVICE_REGION", "r" * 65, "SERVICE_REGION must be 1-64 characters"),
        ("SERVICE_REGION", "-east", "SERVICE_REGION must be 1-64 characters"),
        ("RATELIMIT_STORAGE_URI", "bogus://x", "RATELIMIT_STORAGE_URI must be memory:// or a redis://"),
        ("RATELIMIT_STORAGE_URI", "memory", "RATELIMIT_STORAGE_URI must be memory:// or a redis://"),
        ("RATELIMIT_STORAGE_URI", "127.0.0.1:6379", "RATELIMIT_STORAGE_URI must be memory:// or a redis://"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_env({"ADMIN_API_KEY": KEY, name: value})


def test_a_bad_storage_uri_is_named_without_its_password():
    with pytest.raises(ConfigError) as refused:
        settings_from_env({"ADMIN_API_KEY": KEY, "RATELIMIT_STORAGE_URI": "reddis://:hunter2@cache:6379/0"})
    assert "'reddis'" in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.mark.parametrize("uri", ["memory://", "redis://cache:6379/0", "rediss://:pw@cache/1", "redis+unix:///run/r.sock"])
def test_the_documented_storages_are_accepted(uri):
    assert settings_from_env({"ADMIN_API_KEY": KEY, "RATELIMIT_STORAGE_URI": uri}).ratelimit_storage_uri == uri


@pytest.mark.parametrize("recovery", ["0.05", "0.2"])
def test_error_rate_recovery_must_be_below_the_threshold(recovery):
    env = {"ADMIN_API_KEY": KEY, "ALERT_ERROR_RATE_THRESHOLD": "0.05", "ALERT_ERROR_RATE_RECOVERY": recovery}
    with pytest.raises(ConfigError, match=r"ALERT_ERROR_RATE_RECOVERY \(.*\) must be below ALERT_ERROR_RATE_THRESHOLD"):
        settings_from_env(env)


def test_wsgi_without_admin_key_exits_with_a_clear_message():
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ADMIN_API_KEY is not set" in result.stderr
