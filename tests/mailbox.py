"""Reading what the test SMTP server (tests.workers.SmtpSink) received."""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

LINK = re.compile(r"https?://[^\s\"'<>]+")


@dataclass
class Mail:
    to: list[str]
    subject: str
    text: str
    html: str
    message_id: str
    raw: str

    @property
    def links(self) -> list[str]:
        """Every link in the text part, in order (the HTML part's hrefs must match them)."""
        return LINK.findall(self.text)

    def link(self, containing: str) -> str:
        found = [link for link in self.links if containing in link]
        assert found, f"no link with {containing!r} in {self.subject!r}: {self.links}"
        return found[0]

    @property
    def html_links(self) -> list[str]:
        return [html.unescape(href) for href in re.findall(r'href="([^"]+)"', self.html)]


def parse(received: dict) -> Mail:
    """One message as SmtpSink keeps it: {"to": [...], "data": "..."}."""
    message = email.message_from_string(received["data"], policy=email.policy.default)
    parts = {part.get_content_type(): part.get_content() for part in message.walk()
             if part.get_content_maintype() == "text"}
    return Mail(to=received["to"], subject=str(message["Subject"]), text=parts.get("text/plain", ""),
                html=parts.get("text/html", ""), message_id=str(message["Message-ID"]), raw=received["data"])


def sent(messages: list[dict], subject_contains: str = "") -> list[Mail]:
    """``messages`` (a sink's ``messages``, or a slice of them) parsed."""
    return [mail for mail in map(parse, messages) if subject_contains in mail.subject]


def on_port(url: str, port: int) -> tuple[str, dict]:
    """(the URL on 127.0.0.1:``port``, a Host header naming the link's host):
    a tenant's ``<slug>.localhost`` needs no resolver that way."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="http", netloc=f"127.0.0.1:{port}")), {"Host": parts.netloc}
