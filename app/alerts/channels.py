"""Alert channels: Apprise URLs (Slack, email, ntfy, PagerDuty, ...) and how one is sent.

A channel URL usually carries its secret (a password, a bot token, a webhook
path), so the URL itself is kept only in the settings. Everywhere else — the
outbox rows, logs, CLI output — a channel is its ``target``: a fingerprint of
the URL (scrypt, so even a weak password in it cannot be guessed back from the
fingerprint and the redacted form) and Apprise's own redacted form. The
watcher finds the real URL again by the fingerprint at send time.

Apprise logs through the ``apprise`` logger, and its lines can quote a secret
(an HTTP error naming the URL with a bot token in its path). That logger is
kept out of the service's logs; each send captures Apprise's lines instead and
reports the last complaint with every secret fragment blanked.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import apprise

from app.alerts.webhooks import Outcome

TARGET_PREFIX = "apprise:"
# Entries are separated by whitespace, which no URL contains unencoded, because
# Apprise URLs themselves hold commas, semicolons and '=' (Apprise's own
# configuration files take the same "filter=URL" form, one per line).
_ENTRY_SEPARATOR = re.compile(r"\s+")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Apprise's custom json://, form:// and xml:// take headers (+name=value) and body
# fields (-name=value, :name=value) as query parameters, which its redacted form
# shows as they are: they are blanked here too, since a header is where a token goes.
_FIELD_PARAMETER_MARKS = ("+", "-", ":")
_SECRET_FRAGMENT = re.compile(r"[^/:@?&=#,;+]{4,}")
_MASK = "****"
# Of the redacted URL in a target; alert_deliveries.url holds 2048 characters.
_SHOWN_MAX = 1000
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 8, "salt": b"daemon-health alert channel"}
# For a person reading the message: how Slack colours it, which tag ntfy shows.
_APPRISE_TYPES = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
                  "failure": apprise.NotifyType.FAILURE}
# No service deadline of Apprise's own (notify() then sends in the calling thread; see
# notify below), and the captured log lines kept in memory.
_ASSET = apprise.AppriseAsset(service_timeout=0, result_log_disk_size=0)
_SOCKET_TIMEOUT_MARGIN = 1.0

_apprise_log = logging.getLogger("apprise")
_apprise_log.propagate = False
_apprise_log.addHandler(logging.NullHandler())  # not Python's last-resort stderr handler either


class ChannelError(ValueError):
    """An ALERT_CHANNELS entry that is not a usable channel; the message quotes no secret."""


@dataclass(frozen=True)
class Channel:
    url: str = field(repr=False)
    # The alert types this channel receives; None: every type ALERT_EVENTS lets fire.
    events: frozenset[str] | None
    fingerprint: str
    redacted: str
    # The parts of the URL the redacted form hides, longest first (see ``scrub``).
    secrets: tuple[str, ...] = field(repr=False, default=())

    @property
    def target(self) -> str:
        """How the outbox, the logs and the CLI name this channel: no secret in it.

        The fingerprint alone identifies the channel, so a long redacted URL is
        shortened to fit the outbox's column.
        """
        shown = self.redacted if len(self.redacted) <= _SHOWN_MAX else self.redacted[: _SHOWN_MAX - 3] + "..."
        return f"{TARGET_PREFIX}{self.fingerprint} {shown}"

    def wants(self, alert_type: str) -> bool:
        return self.events is None or alert_type in self.events

    def scrub(self, text: str) -> str:
        """``text`` with every part of the URL that the redacted form hides blanked out."""
        for secret in self.secrets:
            text = text.replace(secret, _MASK)
        return text


def parse(raw: str) -> tuple[Channel, ...]:
    """ALERT_CHANNELS: whitespace-separated entries, each ``[type,type=]apprise-url``."""
    entries = [entry for entry in _ENTRY_SEPARATOR.split(raw) if entry]
    channels = tuple(_parse_entry(entry, n) for n, entry in enumerate(entries, 1))
    seen: set[str] = set()
    for channel in channels:
        if channel.fingerprint in seen:
            raise ChannelError(f"{channel.redacted} is listed twice")
        seen.add(channel.fingerprint)
    return channels


def _parse_entry(entry: str, n: int) -> Channel:
    scheme_at = entry.find("://")
    equals_at = entry.find("=")
    events: frozenset[str] | None = None
    url = entry
    # A filter is whatever precedes an '=' that comes before the URL's scheme separator.
    if 0 <= equals_at < scheme_at:
        names, url = entry[:equals_at], entry[equals_at + 1:]
        events = frozenset(name for name in names.split(",") if name)
        if not events:
            raise ChannelError(f"entry {n} has an empty event filter before '='")
    if not _URL_SCHEME.match(url):
        raise ChannelError(f"entry {n} is not an Apprise URL (schema://...)")
    plugin = apprise.Apprise.instantiate(url, asset=_ASSET)
    if plugin is None:
        # Only the scheme is quoted: the rest may hold the secret.
        raise ChannelError(
            f"entry {n} ({url.split('://', 1)[0]}://...) is not a URL Apprise can send to: "
            "check the service's URL form in Apprise's documentation"
        )
    redacted = _redact_fields(plugin.url(privacy=True))
    return Channel(
        url=url,
        events=events,
        fingerprint=fingerprint(url),
        redacted=redacted,
        secrets=_secret_fragments((url, plugin.url(privacy=False)), redacted),
    )


def fingerprint(url: str) -> str:
    """A short, stable name for a channel URL that does not give the URL back."""
    return hashlib.scrypt(url.encode(), **_SCRYPT).hex()


def _redact_fields(private_url: str) -> str:
    parts = urlsplit(private_url)
    query = [
        (name, _MASK if name.startswith(_FIELD_PARAMETER_MARKS) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def _secret_fragments(forms: tuple[str, str], redacted: str) -> tuple[str, ...]:
    """What the URL as written and Apprise's full form of it show that the redacted form hides.

    Parts of the written URL that Apprise leaves out of both forms (default
    options such as ``mode=insecure``) are no secret, and are left alone.
    """
    written, full = forms
    shown, spelled_out = unquote(redacted), unquote(full)
    fragments = {
        m for m in _SECRET_FRAGMENT.findall(written) + _SECRET_FRAGMENT.findall(full)
        if unquote(m) in spelled_out and unquote(m) not in shown
    }
    fragments |= {unquote(f) for f in fragments}
    # Longest first, so a secret is not left half-replaced by a shorter one inside it.
    return tuple(sorted(fragments, key=len, reverse=True))


def find(channels: Iterable[Channel], target: str) -> Channel | None:
    """The configured channel an outbox target names (by its fingerprint), if any."""
    wanted = target.removeprefix(TARGET_PREFIX).split(" ", 1)[0]
    return next((c for c in channels if c.fingerprint == wanted), None)


def is_target(target: str) -> bool:
    return target.startswith(TARGET_PREFIX)


def notify(channel: Channel, message: dict[str, Any], *, timeout: float) -> Outcome:
    """Send one message, waiting at most ``timeout`` seconds; never raises.

    Apprise sends synchronously. Its own call timeout runs the sends of the
    whole process in one shared pool of a few threads, where a hung channel's
    abandoned sends would make everyone else's queue and time out; so each
    send runs in a thread of its own, which this lane waits for at most
    ``timeout``. Left behind, that thread ends on its socket timeouts (a
    second later). Apprise only says "not delivered", so every failure is
    worth another try.
    """
    answer: list[Outcome] = []
    sender = threading.Thread(
        target=lambda: answer.append(_send(channel, message, timeout)), name="alert-channel", daemon=True
    )
    sender.start()
    sender.join(timeout)
    return answer[0] if answer else Outcome(False, True, f"no answer within {timeout:g} s")


def _send(channel: Channel, message: dict[str, Any], timeout: float) -> Outcome:
    sender = apprise.Apprise(asset=_ASSET)
    try:
        sender.add(channel.url)
        for plugin in sender:
            # A little longer than notify() waits: a receiver that does not answer is reported
            # as that, not as the connection error Apprise makes of its own socket timeout.
            plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout + _SOCKET_TIMEOUT_MARGIN
        result = sender.notify(
            body=message["body"],
            title=message["title"],
            notify_type=_APPRISE_TYPES.get(message["notifyType"], apprise.NotifyType.INFO),
            body_format=apprise.NotifyFormat.TEXT,
        )
    except Exception as exc:  # a plugin's bug must not take the lane down; try again later
        return Outcome(False, True, channel.scrub(f"{type(exc).__name__}: {exc}")[:300])
    if result:
        return Outcome(True, False, "delivered")
    return Outcome(False, True, channel.scrub(_complaint(result.logs()))[:300])


def _complaint(entries: Iterable[Any]) -> str:
    """Apprise's last warning or error for the call: the reason it gives for not delivering."""
    said = [e.message for e in entries if e.level in ("WARNING", "ERROR", "CRITICAL")]
    return said[-1] if said else "not delivered (Apprise gave no reason)"
