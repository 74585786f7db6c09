"""A real SMTP server on 127.0.0.1 (aiosmtpd) for mailto:// alert tests: it asks for a login, records mail."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.processes import free_port

USER = "alerts"
# What the tests look for in logs, CLI output and rows: it must appear in none of them.
PASSWORD = "smtp-Secret-7f3c9a"


@dataclass
class SmtpReceiver:
    controller: Controller
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.controller.port

    def mailto(self, **params: str) -> str:
        """An Apprise URL for this server: plain SMTP (no TLS, no STARTTLS), with a login."""
        query = {"mode": "insecure", "from": "daemon-health@example.com", "to": "ops@example.com"} | params
        return f"mailto://{USER}:{PASSWORD}@127.0.0.1:{self.port}?" + "&".join(f"{k}={v}" for k, v in query.items())

    def stop(self) -> None:
        self.controller.stop()


def start_smtp_receiver() -> SmtpReceiver:
    receiver: SmtpReceiver

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
            receiver.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 Message accepted"

    def authenticate(server, session, envelope, mechanism, data):
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        if ok:
            receiver.logins.append(mechanism)
        return AuthResult(success=ok)

    controller = Controller(
        Handler(), hostname="127.0.0.1", port=free_port(), authenticator=authenticate, auth_require_tls=False
    )
    receiver = SmtpReceiver(controller)
    controller.start()
    return receiver
