"""The ``<daemon_id:…>`` URL converter: only valid ids, never an endpoint's own name.

Without it GET /api/daemon/register would be read as "the daemon called
register" and OPTIONS would advertise GET and DELETE on /register.
"""

from __future__ import annotations

from werkzeug.routing import BaseConverter

from app.registry.schemas import DAEMON_ID_PATH_REGEX


class DaemonIdConverter(BaseConverter):
    regex = DAEMON_ID_PATH_REGEX


class AnyTextConverter(BaseConverter):
    """``<any_text:…>``: any non-empty text, '/' and newlines included.

    For names the view validates itself, so that a bad one is a 400 naming
    the rule rather than a 404 for a path no route matched.
    """

    regex = "(?s:.+)"
    part_isolating = False
