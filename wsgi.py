"""WSGI entry point: ``gunicorn wsgi:app``."""

import logging

from app import create_app
from app.http.limiter import LOGGER_NAME

app = create_app()

# Under gunicorn, the service's own warnings (database unavailable) and
# Flask-Limiter's (rate limit storage lost and back) go where gunicorn's do,
# with its timestamps and level.
_gunicorn_errors = logging.getLogger("gunicorn.error")
if _gunicorn_errors.handlers:
    for logger in (app.logger, logging.getLogger(LOGGER_NAME)):
        logger.handlers = _gunicorn_errors.handlers
        logger.setLevel(logging.INFO)
