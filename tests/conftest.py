"""The fixtures live in tests/support/, registered here as plugins."""

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.redis_store",
    "tests.support.app_fixtures",
    "tests.support.uptime_fixtures",
    "tests.support.gunicorn_servers",
    "tests.support.browser",
]
