"""Where a running `dossier serve` can be reached, so `dossier ask` on the same store asks it instead of loading
everything itself.

`dossier serve` on an embedded store writes `serving.json` into the store folder (its loopback URL and process
id) and removes it when it stops. `dossier ask` reads it: when the process is alive and the URL is on this
machine's loopback, it sends the question there (a second or so, against a cold start's model load and index
mapping), and answers in its own process when anything fails. Only loopback URLs are followed, so a planted
file cannot send a question, or the API token with it, off the machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SERVING_FILE = "serving.json"
# Asking a running server: a refused connection fails at once; an answer may wait for a busy server.
CONNECT_TIMEOUT_S = 2.0
ANSWER_TIMEOUT_S = 120.0
LOOPBACK_NAMES = frozenset({"localhost"})
# Addresses that listen on every interface, loopback included: the file then names the loopback one.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_url(host: str, port: int) -> str | None:
    """The URL this machine reaches a server listening on `host`:`port` by, or None when it is not loopback."""
    host = WILDCARD_HOSTS.get(host, host)
    if not _is_loopback(host):
        return None
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def announced(store: Path | None, host: str, port: int) -> Iterator[None]:
    """Write `serving.json` into the embedded store `store` while the block runs (a server is up), then remove
    it if it is still this process's. Nothing is written for a Chroma server's store or a non-loopback address.
    """
    url = local_url(host, port)
    where = store / SERVING_FILE if store is not None and store.is_dir() and url else None
    if where is not None:
        partial = where.with_name(f".{SERVING_FILE}.{os.getpid()}")
        partial.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
        partial.replace(where)  # readers never see half a file
    try:
        yield
    finally:
        if where is not None and _read(where).get("pid") == os.getpid():
            with suppress(OSError):
                where.unlink()


def running_url(store: Path) -> str | None:
    """The loopback URL of a live `dossier serve` on `store`, from its `serving.json`, or None."""
    found = _read(store / SERVING_FILE)
    url, pid = found.get("url"), found.get("pid")
    if not isinstance(url, str) or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not _is_loopback(parts.hostname):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return url


def ask_server(url: str, token: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON answer of `POST {url}/api/ask` with `body` (None values left out), or None when the server cannot
    give one (gone, refused, an error status): the caller then answers in its own process, with its own messages.
    """
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(
            f"{url}/api/ask",
            json={key: value for key, value in body.items() if value is not None},
            headers=headers,
            timeout=httpx.Timeout(ANSWER_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        )
    except httpx.HTTPError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


def _read(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
