"""Who may use which door in each mode (open, token, login, read-only), as decided from the settings."""

from __future__ import annotations

import pytest

from assistant.access import LOGIN_MAX_LOCKOUT_S, Access, LoginThrottle
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


# -- the login throttle ---------------------------------------------------------------------------


class Clock:
    """Monotonic seconds the test moves by hand: lockouts are checked without waiting for them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_lockouts_grow_and_end() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_s=60, lockout_s=10, clock=clock)
    waits = []
    for _ in range(4):  # four runs of wrong passwords, each after the lockout before it ended
        assert [throttle.attempt("10.0.0.1") for _ in range(3)] == [None, None, None]
        wait = throttle.attempt("10.0.0.1")
        assert wait is not None and throttle.attempt("10.0.0.1") == wait, "locked out until the lockout ends"
        waits.append(wait)
        clock.now += wait
    assert waits == [10, 20, 40, 80], "each lockout doubles the one before"
    assert throttle.attempt("10.0.0.2") is None, "another address has its own count"


def test_login_lockout_is_capped() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=1, window_s=60, lockout_s=LOGIN_MAX_LOCKOUT_S / 2, clock=clock)
    waits = []
    for _ in range(3):
        throttle.attempt("a")
        wait = throttle.attempt("a")
        assert wait is not None
        waits.append(wait)
        clock.now += wait
    assert waits == [LOGIN_MAX_LOCKOUT_S / 2, LOGIN_MAX_LOCKOUT_S, LOGIN_MAX_LOCKOUT_S]


def test_failures_outside_the_window_and_before_a_success_do_not_count() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=2, window_s=60, lockout_s=10, clock=clock)
    throttle.attempt("a"), throttle.attempt("a")
    clock.now += 61
    assert throttle.attempt("a") is None, "the earlier failures left the window"
    throttle.attempt("a")
    throttle.succeeded("a")
    assert [throttle.attempt("a"), throttle.attempt("a")] == [None, None], "a success clears the count"
    assert throttle.attempt("a") is not None


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    throttle = LoginThrottle(max_failures=1, window_s=60, lockout_s=10, clock=Clock(), max_clients=3)
    for client in ("a", "b", "c", "d"):
        throttle.attempt(client)
    assert throttle.attempt("a") is None, "the longest idle client was forgotten to make room"
    assert throttle.attempt("d") is not None
