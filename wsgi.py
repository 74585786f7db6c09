"""WSGI entry point: ``gunicorn wsgi:app``."""

import logging

from app import create_app

app = create_app()

# Under gunicorn, the service's own warnings (database unavailable, rate limit
# storage lost and back) go where gunicorn's do, with its timestamps and level.
_gunicorn_errors = logging.getLogger("gunicorn.error")
if _gunicorn_errors.handlers:
    app.logger.handlers = _gunicorn_errors.handlers
    app.logger.setLevel(logging.INFO)
