"""Finding a running `dossier serve` on a store: what `serving.json` must hold before `dossier ask` follows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.serving import SERVING_FILE, announced, local_url, running_url


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:7860"),
        ("0.0.0.0", "http://127.0.0.1:7860"),  # every interface: reached on loopback
        ("::", "http://[::1]:7860"),
        ("localhost", "http://localhost:7860"),
        ("192.0.2.10", None),  # one outside interface: not announced
    ],
)
def test_the_announced_url_is_on_loopback(host: str, expected: str | None) -> None:
    assert local_url(host, 7860) == expected


def test_a_server_is_announced_while_it_runs_and_not_after(tmp_path: Path) -> None:
    with announced(tmp_path, "0.0.0.0", 7861):
        assert json.loads((tmp_path / SERVING_FILE).read_text()) == {"url": "http://127.0.0.1:7861", "pid": os.getpid()}
        assert running_url(tmp_path) == "http://127.0.0.1:7861"
    assert not (tmp_path / SERVING_FILE).exists()
    assert running_url(tmp_path) is None


def test_a_later_server_s_announcement_is_left_alone(tmp_path: Path) -> None:
    with announced(tmp_path, "127.0.0.1", 7862):
        (tmp_path / SERVING_FILE).write_text(json.dumps({"url": "http://127.0.0.1:7863", "pid": os.getpid() + 1}))
    assert (tmp_path / SERVING_FILE).exists()


def test_nothing_is_announced_for_a_chroma_server_or_an_outside_address(tmp_path: Path) -> None:
    with announced(None, "127.0.0.1", 7864), announced(tmp_path, "192.0.2.10", 7864):
        assert not (tmp_path / SERVING_FILE).exists()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: {"url": "http://127.0.0.1:7860", "pid": dead_pid()}, id="process-gone"),
        pytest.param(lambda: {"url": "http://203.0.113.5:7860", "pid": os.getpid()}, id="not-loopback"),
        pytest.param(lambda: {"url": "http://evil.example:7860", "pid": os.getpid()}, id="a-name"),
        pytest.param(lambda: {"url": "https://127.0.0.1:7860", "pid": os.getpid()}, id="not-http"),
        pytest.param(lambda: {"url": "http://127.0.0.1:7860", "pid": True}, id="pid-not-a-number"),
        pytest.param(lambda: {"url": 7860, "pid": os.getpid()}, id="url-not-text"),
        pytest.param(lambda: ["http://127.0.0.1:7860"], id="not-an-object"),
        pytest.param(lambda: "{half", id="not-json"),
    ],
)
def test_a_stale_or_planted_announcement_is_not_followed(tmp_path: Path, content: object) -> None:
    found = content()  # type: ignore[operator]
    (tmp_path / SERVING_FILE).write_text(found if isinstance(found, str) else json.dumps(found))

    assert running_url(tmp_path) is None
