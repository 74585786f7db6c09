"""Settings come from the environment; a bad one stops the start with its name."""

from __future__ import annotations

import subprocess
import sys
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
        service_region="eu-west-1",
    )


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
        ("DAEMON_API_KEYS", "long-enough-daemon-key,short", "DAEMON_API_KEYS: every key must be at least 16"),
        ("READ_API_KEYS", "short", "READ_API_KEYS: every key must be at least 16"),
        ("DAEMON_API_KEYS", KEY, "ADMIN_API_KEY and DAEMON_API_KEYS share a key"),
        ("SERVICE_REGION", "eu west", "SERVICE_REGION must be 1-64 characters"),
        ("SERVICE_REGION", "r" * 65, "SERVICE_REGION must be 1-64 characters"),
        ("SERVICE_REGION", "-east", "SERVICE_REGION must be 1-64 characters"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_env({"ADMIN_API_KEY": KEY, name: value})


def test_wsgi_without_admin_key_exits_with_a_clear_message():
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ADMIN_API_KEY is not set" in result.stderr
