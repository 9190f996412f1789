"""Who may use which door in each mode (open, token, login, read-only), as decided from the settings."""

from __future__ import annotations

import pytest

from assistant.access import Access
from assistant.settings import Settings

MODES = {
    "open": ({}, True, ["API /api/*: open to anyone", "chat /: open to anyone", "through the API and the chat"]),
    "token": (
        {"api_token": "t"},
        False,
        ["needs the bearer token", "chat /: open to anyone", "only through the API with the token"],
    ),
    "login": ({"auth": "ann:pw"}, True, ["API /api/*: open to anyone", "needs a login", "after logging in"]),
    "token and login": ({"api_token": "t", "auth": "ann:pw"}, True, ["needs the bearer token", "after logging in"]),
    "read-only": ({"read_only": True, "api_token": "t", "auth": "ann:pw"}, False, ["disabled everywhere"]),
}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_says_who_may_write(mode: str) -> None:
    fields, chat_writes, says = MODES[mode]
    access = Access.from_settings(Settings(**fields))  # type: ignore[arg-type]
    assert access.chat_writes is chat_writes
    assert (access.chat_write_refusal == "") is chat_writes
    summary = "\n".join(access.summary())
    assert len(access.summary()) == 3 and all(phrase in summary for phrase in says), summary


def test_a_token_alone_never_leaves_the_chat_writable() -> None:
    refusal = Access.from_settings(Settings(api_token="t")).chat_write_refusal
    assert "POST /api/articles" in refusal and "DOSSIER_AUTH" in refusal
