"""A technician's day in the browser: sign in through Keycloak, ask, read the streamed answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.pages import Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

QUESTION = (
    "Fault: hydraulic system B pressure fluctuates after engine start and the LOW PRESSURE "
    "light flickers. How do I troubleshoot it?"
)

# The conversation is titled with the question's start, cut between words.
TITLE = re.compile(
    r"^Fault: hydraulic system B pressure fluctuates after engine start and the LOW…$"
)


@pytest.fixture
def technician(dev_credentials: dict[str, Any]) -> tuple[str, str]:
    """The dev technician's username and password (keycloak/dev-users.json)."""
    user = next(u for u in dev_credentials["users"] if u["roles"] == ["technician"])
    return user["username"], user["password"]


def test_technician_asks_a_question_and_reads_the_streamed_answer(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    technician: tuple[str, str],
) -> None:
    """Sign in, start a conversation, see the answer stream in with its agent, delete, sign out."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.open()
    ui.heading("Sign in")
    ui.shot("01-sign-in")
    page.get_by_role("link", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r"/realms/mro/"))
    ui.shot("02-keycloak-login")
    ui.keycloak_login(*technician)
    ui.heading("Your conversations")
    assert "Users" not in ui.nav_links()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="New conversation").click()
    ui.heading("New conversation")
    expect(page.get_by_label("Your question")).to_be_focused()
    page.get_by_label("Your question").fill(QUESTION)
    page.get_by_role("button", name="Send").click()

    answer = page.locator(".message-assistant").last
    expect(answer.locator(".message-label")).to_contain_text("Troubleshooting agent")
    expect(answer.locator(".message-label")).to_contain_text(re.compile(r"confidence \d+ %"))
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=30_000)
    expect(answer.locator(".message-content")).to_contain_text("fault isolation task")
    expect(answer.locator(".badge")).to_have_count(0)
    expect(page.get_by_role("log", name="Messages")).to_have_attribute("aria-busy", "false")
    ui.heading(TITLE)
    assert re.search(r"#/conversations/[0-9a-f-]{36}$", page.url)
    ui.shot("03-answer", full_page=False)

    page.reload()
    ui.heading(TITLE)
    expect(page.locator(".message")).to_have_count(2)
    expect(page.locator(".message-assistant .message-label")).to_contain_text("Troubleshooting")

    page.get_by_role("button", name="Delete conversation").click()
    dialog = page.get_by_role("dialog", name="Delete this conversation?")
    expect(dialog).to_be_visible()
    ui.shot("04-confirm-delete", full_page=False)
    dialog.get_by_role("button", name="Delete").click()
    ui.heading("Your conversations")
    expect(page.get_by_role("alert")).to_contain_text("Deleted")
    expect(page.get_by_role("link", name=TITLE)).to_have_count(0)

    ui.sign_out()
    page.goto(f"{live_stack.gateway_url}/#/")
    ui.heading("Sign in")
    assert ui.errors == []


def test_markup_in_questions_and_answers_stays_text(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    technician: tuple[str, str],
) -> None:
    """A question with HTML is shown as text, in the question and in the answer quoting it."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(*technician, route="#/new")
    ui.heading("New conversation")
    markup = 'Manual says <img src=x id="injected"> and <b id="bold">bold</b>; what now?'
    page.get_by_label("Your question").fill(markup)
    page.get_by_label("Your question").press("Enter")
    answer = ui.finished_answer()
    expect(page.locator(".message-user .message-content")).to_have_text(markup)
    expect(answer.locator(".message-content")).to_contain_text('<img src=x id="injected">')
    expect(page.locator("#injected, #bold")).to_have_count(0)
    ui.delete_conversation()
    assert ui.errors == []


def test_a_failed_stream_shows_an_error_banner_and_a_partial_answer(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    technician: tuple[str, str],
) -> None:
    """When the model connection breaks mid-answer, the banner says so and the text is marked."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(*technician, route="#/new")
    ui.heading("New conversation")
    # Choosing the agent skips classification, so the fault hits the answer's stream.
    page.get_by_label("Agent").select_option("troubleshooting")
    live_stack.azure.inject_fault("cut", after_chunks=3)
    page.get_by_label("Your question").fill("Troubleshoot the APU bleed valve fault, please.")
    page.get_by_role("button", name="Send").click()
    answer = ui.finished_answer()
    banner = page.locator("#banner")
    expect(banner).to_contain_text("The answer could not be completed")
    expect(answer.locator(".badge")).to_have_text(re.compile("Partial answer|No answer"))
    expect(answer.locator(".message-label")).to_contain_text("chosen by you")
    ui.shot("05-stream-error", full_page=False)
    page.get_by_role("button", name="Dismiss message").click()
    expect(banner).to_be_empty()
    ui.delete_conversation()
