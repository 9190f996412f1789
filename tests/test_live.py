"""A live library: any process's writes reach a running `dossier serve` without a restart (issue 13).

Everything here is a real process: `dossier serve` and the CLI run as `python -m assistant.cli` from this
checkout, against an embedded store in tmp_path or a real `chroma run` on 127.0.0.1. The servers are polled
until the change shows (up to `VISIBLE_WITHIN_S`): the tests say that it shows, not how fast; bench/writers.py
measures how fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, _drop_collections, _free_port

from assistant.embeddings import Embedder
from assistant.serving import SERVING_FILE
from assistant.settings import Settings
from assistant.store import Store
from ingest.pipeline import ingest_paths

pytestmark = pytest.mark.live

# A generous bound for a change to show in a running server (it shows at the next question; see bench/writers.py).
VISIBLE_WITHIN_S = 30
START_TIMEOUT_S = 180  # a server on a busy 2-core machine: imports, then the model at the first question

# A new article the demo corpus knows nothing about (fictional), and a question only it answers.
LIGHTHOUSE_ID = "kelmouth-lighthouse"
LIGHTHOUSE = """title: Kelmouth lighthouse shines again after thirty years
date: 2024-06-21
source: Kelmouth Courier
author: Ingrid Folk

The lighthouse on Kelmouth Point was relit on Friday evening, thirty years after it was switched off. Its new
lamp can be seen 27 nautical miles out to sea, the harbour trust said.

Volunteers spent two winters restoring the tower, which was built in 1868.
"""
LIGHTHOUSE_QUESTION = "How far out to sea can the Kelmouth lighthouse lamp be seen?"


def process_env(**settings: str) -> dict[str, str]:
    """This environment without DOSSIER_* settings or dossier.toml, offline, plus `settings` as DOSSIER_* variables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DOSSIER_")}
    env.update(DOSSIER_CONFIG=os.devnull, HF_HUB_OFFLINE="1")
    env.update({f"DOSSIER_{name.upper()}": value for name, value in settings.items()})
    return env


def dossier(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI of this checkout in its own process, as cron or a second shell would."""
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"dossier {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-2000:]}"
    return done


class ServeProcess:
    """`dossier serve --no-demo` of this checkout in its own process on a free port of 127.0.0.1."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = log
        with log.open("wb") as out:
            command = [
                sys.executable,
                "-m",
                "assistant.cli",
                "serve",
                "--no-demo",
                "--port",
                self.url.rsplit(":", 1)[1],
            ]
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dossier serve exited:\n{self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/api/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(
            f"dossier serve did not answer within {START_TIMEOUT_S} s:\n{self.log.read_text()[-2000:]}"
        )

    def ask(self, question: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/api/ask", json={"question": question}, timeout=START_TIMEOUT_S)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def article_ids(self) -> set[str]:
        return {article["id"] for article in httpx.get(f"{self.url}/api/articles", timeout=30).json()["articles"]}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start `dossier serve` processes (keyword arguments become DOSSIER_* variables); all stop at the end."""
    started: list[ServeProcess] = []

    def start(**settings: str) -> ServeProcess:
        server = ServeProcess(process_env(**settings), tmp_path / f"serve-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll `check` until it holds, for up to VISIBLE_WITHIN_S seconds."""
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {VISIBLE_WITHIN_S} s"
        time.sleep(0.2)


def cites(answer: dict[str, Any], article_id: str) -> bool:
    return any(citation["article_id"] == article_id for citation in answer["citations"])


def citations(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What an answer cites: article id, passage and sentence of each citation, in order."""
    return [(c["article_id"], c["passage"], c["sentence"]) for c in answer["citations"]]


@pytest.fixture
def lighthouse(tmp_path: Path) -> Path:
    folder = tmp_path / "new"
    folder.mkdir()
    path = folder / f"{LIGHTHOUSE_ID}.txt"
    path.write_text(LIGHTHOUSE, encoding="utf-8")
    return path


# -- embedded store ----------------------------------------------------------------------------


def test_a_running_server_sees_a_cli_ingest_and_a_cli_removal(
    serve: Callable[..., ServeProcess], demo_store: Path, tmp_path: Path, lighthouse: Path
) -> None:
    store = tmp_path / "live-store"
    shutil.copytree(demo_store, store)
    server = serve(store=str(store))
    server.wait_until_healthy()
    before = server.ask(LIGHTHOUSE_QUESTION)  # loads the model and the index, as a server that has been answering
    assert not cites(before, LIGHTHOUSE_ID) and LIGHTHOUSE_ID not in server.article_ids()

    dossier("ingest", "--quiet", str(lighthouse), "--store", str(store), env=process_env())

    answers: list[dict[str, Any]] = []

    def answered() -> bool:
        answers.append(server.ask(LIGHTHOUSE_QUESTION))
        return cites(answers[-1], LIGHTHOUSE_ID)

    eventually(answered, "ingest")
    assert "27 nautical miles" in answers[-1]["text"]
    assert answers[-1]["citations"][0]["article_id"] == LIGHTHOUSE_ID
    assert LIGHTHOUSE_ID in server.article_ids()

    dossier("remove", LIGHTHOUSE_ID, "--store", str(store), env=process_env())

    eventually(lambda: not cites(server.ask(LIGHTHOUSE_QUESTION), LIGHTHOUSE_ID), "removal")
    assert LIGHTHOUSE_ID not in server.article_ids()
    assert "27 nautical miles" not in server.ask(LIGHTHOUSE_QUESTION)["text"]


def test_dossier_ask_asks_the_server_running_on_its_store_and_answers_alone_without_one(
    serve: Callable[..., ServeProcess], demo_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "served-store"
    shutil.copytree(demo_store, store)
    server = serve(store=str(store))
    server.wait_until_healthy()
    assert json.loads((store / SERVING_FILE).read_text())["url"] == server.url
    ask = ("ask", "--json", "--as-of", "2024-06-07", "What figures did Hamas report?", "--store", str(store))

    served = dossier(*ask, env=process_env())
    local = dossier(*ask, "--local", env=process_env())

    assert f"answered by the server running on this store, {server.url}" in served.stderr
    assert "answered by the server" not in local.stderr
    assert "36,000" in json.loads(served.stdout)["text"]
    assert json.loads(served.stdout)["citations"] == json.loads(local.stdout)["citations"]

    server.stop()  # SIGTERM: the server takes its announcement with it
    assert not (store / SERVING_FILE).exists()
    alone = dossier(*ask, env=process_env())
    assert "answered by the server" not in alone.stderr
    assert json.loads(alone.stdout)["citations"] == json.loads(local.stdout)["citations"]


def test_a_store_open_in_one_process_finds_by_meaning_what_another_ingested(
    settings: Settings, embedder: Embedder, corpus: Path, lighthouse: Path
) -> None:
    # An embedded Chroma client keeps its vector index as it loaded it; without the reopen in Store, the new
    # article's chunks would be listed (SQLite) but never come back from a vector query.
    store = Store.from_settings(settings, embedder=embedder)
    ingest_paths([corpus], store)
    vector = embedder.encode_query(LIGHTHOUSE_QUESTION)
    assert not any(cid.startswith(f"{LIGHTHOUSE_ID}#") for cid, _ in store.nearest(vector, 3))

    dossier("ingest", "--quiet", str(lighthouse), "--store", str(settings.store), env=process_env())

    nearest = [cid for cid, _ in store.nearest(vector, 3)]
    assert nearest[0].startswith(f"{LIGHTHOUSE_ID}#"), nearest
    assert any(p.article_id == LIGHTHOUSE_ID for p in store.search(vector, 3))


# -- Chroma server: replicas -------------------------------------------------------------------


@pytest.mark.server
def test_replicas_on_one_chroma_server_serve_a_cli_ingest_once_and_agree(
    serve: Callable[..., ServeProcess], chroma_server: str, embedder: Embedder, demo_dir: Path, lighthouse: Path
) -> None:
    collection = f"test-live-{uuid.uuid4().hex[:12]}"
    shared = Settings(chroma_url=chroma_server, collection=collection)
    try:
        store = Store.from_settings(shared, embedder=embedder)
        assert ingest_paths([demo_dir], store).added
        chunks_before = store.chunk_count()
        replicas = [serve(chroma_url=chroma_server, collection=collection) for _ in range(2)]
        for replica in replicas:
            replica.wait_until_healthy()
            assert not cites(replica.ask(LIGHTHOUSE_QUESTION), LIGHTHOUSE_ID)

        env = process_env(chroma_url=chroma_server, collection=collection)
        dossier("ingest", "--quiet", str(lighthouse), env=env)

        answers: dict[str, dict[str, Any]] = {}
        for replica in replicas:

            def answered(replica: ServeProcess = replica) -> bool:
                answers[replica.url] = replica.ask(LIGHTHOUSE_QUESTION)
                return cites(answers[replica.url], LIGHTHOUSE_ID)

            eventually(answered, f"ingest seen by {replica.url}")
        first, second = (answers[replica.url] for replica in replicas)
        assert "27 nautical miles" in first["text"] and first["citations"][0]["article_id"] == LIGHTHOUSE_ID
        assert (first["text"], citations(first)) == (second["text"], citations(second))

        # Stored once: the new article's chunks, counted in Chroma, are what its one record says, and nothing else grew.
        record = store.get_article(LIGHTHOUSE_ID)
        assert store.chunk_count() == chunks_before + record.chunks
        dossier("ingest", "--quiet", str(lighthouse), env=env)  # again, from another process: unchanged
        assert store.chunk_count() == chunks_before + record.chunks
        assert all(replica.article_ids() == {a.id for a in store.list_articles()} for replica in replicas)
    finally:
        _drop_collections(chroma_server, collection)
