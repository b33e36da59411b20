"""Mail Keycloak sent during the test session, read from the ``mail_sink`` fixture.

Keycloak answers a form only after the SMTP server accepted its message, so once the browser shows
the page that follows the form, the mail is already in the sink.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.fixtures.keycloak import MailSink

ACTION_LINK = re.compile(r"https?://\S+/login-actions/action-token\?\S+")


@dataclass(frozen=True)
class Mail:
    """One message as its reader sees it: subject, plain text and the link to follow."""

    subject: str
    text: str
    link: str


def newest_mail(sink: MailSink, address: str) -> Mail:
    """The newest message to address with its action link; fails the test when there is none."""
    messages = sink.to(address)
    assert messages, f"no mail to {address}"
    message = messages[-1]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None, f"the mail to {address} has no plain-text part"
    text = str(body.get_content())
    links = ACTION_LINK.findall(text)
    assert links, f"the mail to {address} holds no action link:\n{text}"
    return Mail(subject=str(message["Subject"]), text=text, link=links[0])
