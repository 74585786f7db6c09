"""What the tests and the benchmarks share. The fixtures are pytest plugins (tests/conftest.py).

api.py            admin keys, request bodies          clocks.py       FrozenClock, Ticker
app_fixtures.py   the app in-process (plugin)         postgres.py     scratch databases, alembic (plugin)
redis_store.py    the local Redis (plugin)            unavailable.py  skip locally, fail under CI
processes.py      ports, environment, stop by pid     http_client.py  the one HTTP client
gunicorn_servers.py  real gunicorn (plugin)           live_server.py  a WSGI app on a thread
deployment.py     nginx, private Postgres and Redis, load threads
browser.py        headless Chromium (plugin)          agent.py        the agent against the app
webhook_receiver.py  a real alert receiver            paths.py        the project's folders
"""
