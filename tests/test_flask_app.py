"""The service's Flask class asks whether a view or hook is async once, not on every call."""

from __future__ import annotations

import flask

from app.http.flask_app import ServiceFlask


def test_plain_views_and_hooks_are_inspected_once(monkeypatch):
    inspected = []
    ensure_sync = flask.Flask.ensure_sync
    monkeypatch.setattr(
        flask.Flask, "ensure_sync", lambda self, func: inspected.append(func) or ensure_sync(self, func)
    )
    app = ServiceFlask(__name__)

    @app.get("/")
    def index():
        return "ok"

    @app.before_request
    def hook():
        return None

    client = app.test_client()
    assert [client.get("/").data for _ in range(3)] == [b"ok"] * 3
    assert (inspected.count(index), inspected.count(hook)) == (1, 1)


def test_coroutine_functions_are_handed_to_flask_every_time(monkeypatch):
    app = ServiceFlask(__name__)
    wrapped = []

    def async_to_sync(func):
        wrapped.append(func)
        return lambda *args, **kwargs: "ran"

    monkeypatch.setattr(app, "async_to_sync", async_to_sync)

    async def view():
        return "never awaited here"

    assert [app.ensure_sync(view)() for _ in range(2)] == ["ran", "ran"]
    assert wrapped == [view, view]
