"""Shared fixtures: an isolated environment per test, the real embedding model, real Chroma (embedded and server).

Sections, in order: environment and settings; files (the team's mini corpus, the demo corpus, ../shared);
model and stores; the Chroma server; the Dossier server; answering (demo store copies, a fake LLM server);
the browser (Debian's headless chromium through Playwright). Add new fixtures to the section they belong to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from assistant.browser import CHROMIUM, launch_chromium
from assistant.embeddings import Embedder
from assistant.models import Citation
from assistant.settings import Settings
from assistant.store import Store

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from playwright.sync_api import Browser

    from assistant.chain import Assistant

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
CHROMA = Path(sys.executable).with_name("chroma")

# -- environment and settings ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DOSSIER_* variable or dossier.toml from the outside; the store lives in tmp_path; models stay offline."""
    for name in list(os.environ):
        if name.startswith("DOSSIER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOSSIER_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings(isolated_env: Path) -> Settings:
    """Settings as the CLI would build them here: defaults plus the isolated DOSSIER_STORE."""
    return Settings()


# -- files -------------------------------------------------------------------------------------

# A tiny corpus the team wrote for these tests (fictional places and people). Facts tests rely on:
#   bridge.txt       front matter; Larsholm harbour bridge, 1,240 metres, 212 million crowns, Mayor Henrik Sand
#   orchard.md       `---` front matter and a `# heading`; Vestdal apple harvest of 41,500 tonnes, chair Maria Eklund
#   ferry.txt        no front matter (title is the first line); a photo caption with its credit and a newsletter
#                    promo to be cleaned away; Larsholm ferry strike, 6.5% pay rise, 420 crew members
#   briefs.jsonl     line 1 id "brief-museum" (Museum of Maps, 14-month renovation, 86,000 maps);
#                    line 2 has no id (-> "briefs/2"): tram line 7 to Northgate, 3.2 kilometres, five stops
CORPUS_FILES = {
    "bridge.txt": """title: Larsholm opens its new harbour bridge
date: 2024-05-14
source: Larsholm Gazette
url: https://example.org/larsholm-gazette/2024/05/14/harbour-bridge
author: Nora Lind

The new harbour bridge in Larsholm opened to traffic on Tuesday after four years of construction. The steel span is 1,240 metres long and cost 212 million crowns, the city said.

Mayor Henrik Sand cut the ribbon at 10:00. About 18,000 vehicles are expected to cross the bridge each day.

The old ferry link across the harbour will close at the end of June.
""",
    "orchard.md": """---
title: Apple harvest in Vestdal hits a record 41,500 tonnes
date: 2024-10-02
source: Farm Weekly
author: Jonas Berg
---

# Apple harvest in Vestdal hits a record 41,500 tonnes

Growers in the Vestdal valley picked 41,500 tonnes of apples this season, the most since records began in 1978, the regional growers' association said on Wednesday.

A warm spring and late rain helped the crop, said association chair Maria Eklund. Wholesale prices fell by 8% as a result.
""",
    "ferry.txt": """Ferry crews end four-day strike in Larsholm

Ferry crews in Larsholm ended their four-day strike on Thursday after the operator agreed to a 6.5% pay rise. Services resumed at noon.

Crew members walk back to the ferry terminal in Larsholm on Thursday (photo credit: NORA LIND)

The union said 420 crew members had voted on the deal and 81% backed it.

Stay updated with the latest news!
Subscribe to the Larsholm Gazette Newsletter

The operator said the strike cost it 2.1 million crowns in lost fares.
""",
    "briefs.jsonl": """{"id": "brief-museum", "title": "Museum of Maps reopens after 14-month renovation", "text": "The Museum of Maps in Larsholm reopened on Friday after a 14-month renovation. Its collection of 86,000 maps is now stored in a climate-controlled basement.", "source": "City Desk", "published": "2024-03-08", "url": "https://example.org/city-desk/museum-of-maps", "author": "Ola Strand"}
{"title": "Tram line 7 extended to Northgate", "text": "Tram line 7 now runs to Northgate. The extension opened on Monday and adds 3.2 kilometres of track and five stops.", "source": "City Desk", "published": "March 11, 2024"}
""",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder with the team's mini corpus (see CORPUS_FILES for the facts): five articles in four files."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in CORPUS_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def demo_dir() -> Path:
    """The demo corpus shipped in examples/articles (ten articles in every supported format)."""
    return REPO / "examples" / "articles"


@pytest.fixture
def shared_dir() -> Path:
    """../shared (team data outside the repo); tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent")
    return SHARED


@pytest.fixture
def make_pdf() -> Callable[..., Path]:
    """Write a PDF with one text block per page (fpdf2's core font: keep the text ASCII)."""

    def make(path: Path, pages: list[str], title: str = "", author: str = "", created: datetime | None = None) -> Path:
        from fpdf import FPDF

        pdf = FPDF()
        if title:
            pdf.set_title(title)
        if author:
            pdf.set_author(author)
        pdf.set_creation_date(created or datetime(2024, 4, 2, 9, 30, tzinfo=UTC))
        for text in pages:
            pdf.add_page()
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(0, 6, text)
        pdf.output(str(path))
        return path

    return make


# -- model and stores --------------------------------------------------------------------------


class MemoEmbedder(Embedder):
    """The real model, remembering the vectors of texts it has already encoded in this session.

    Many tests ingest the same small corpus; encoding it once keeps the suite fast on a 2-core machine.
    """

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], show_progress: bool = False, bulk: bool = False) -> np.ndarray:
        new = list(dict.fromkeys(text for text in texts if text not in self._memo))
        if new:
            self._memo.update(zip(new, super().encode(new, show_progress, bulk), strict=True))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._memo[text] for text in texts])


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real bundled all-MiniLM-L6-v2, loaded once per test process (see MemoEmbedder)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return MemoEmbedder()


@pytest.fixture
def store(settings: Settings, embedder: Embedder) -> Store:
    """An empty embedded (persistent) store in tmp_path."""
    return Store.from_settings(settings, embedder=embedder)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def backend_settings(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings for an empty store in either mode; in server mode DOSSIER_CHROMA_URL is set too (for the CLI).

    Server-mode tests get their own collection name, so they never see each other's data.
    """
    if request.param == "embedded":
        yield settings
        return
    url = request.getfixturevalue("chroma_server")
    collection = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DOSSIER_CHROMA_URL", url)
    monkeypatch.setenv("DOSSIER_COLLECTION", collection)
    yield settings.with_overrides(chroma_url=url, collection=collection)
    _drop_collections(url, collection)


@pytest.fixture
def store_backend(backend_settings: Settings, embedder: Embedder) -> Store:
    """An empty store, once embedded (persistent in tmp_path) and once on the real Chroma server."""
    return Store.from_settings(backend_settings, embedder=embedder)


# -- the Chroma server -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` on a free port of 127.0.0.1 for the whole session; yields its URL."""
    if not CHROMA.exists():
        pytest.skip(f"{CHROMA} not found: pip install chromadb")
    folder = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(folder / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_heartbeat(url, process, timeout=60)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_heartbeat(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with code {process.returncode} before answering")
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"chroma run did not answer {url}/api/v2/heartbeat within {timeout} s")


def _drop_collections(url: str, collection: str) -> None:
    import chromadb

    host, _, port = url.removeprefix("http://").partition(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    for name in (collection, f"{collection}-articles", f"{collection}-meta"):
        with contextlib.suppress(Exception):  # the test may not have created all three
            client.delete_collection(name)


# -- the Dossier server (API + chat) -----------------------------------------------------------


def clean_settings(**fields: object) -> Settings:
    """Settings from `fields` and defaults only: no DOSSIER_* variable or dossier.toml (for session/module fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("DOSSIER_"):
                patch.delenv(name)
        patch.setenv("DOSSIER_CONFIG", os.devnull)
        return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """The demo corpus ingested once per session. Read-only template: `start_dossier` serves copies of it."""
    from ingest.pipeline import ingest_paths

    folder = tmp_path_factory.mktemp("demo-store") / "store"
    store = Store.from_settings(clean_settings(store=folder), embedder=embedder)
    report = ingest_paths([REPO / "examples" / "articles"], store)
    assert report.added, report.to_json()
    store.close()
    return folder


def bench_module(name: str) -> Any:
    """A script of bench/ imported as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A read-only store of 2,800 chunks of made-up news text (bench/synthetic.py: Zipf-distributed words, 8 chunks per
    article, random vectors), large enough that a question's rarest words are in a few chunks and its commonest in
    most. Its lexical index is saved in two segments (2,400 chunks, then 400 more)."""
    from assistant.lexical import LexicalIndex

    synthetic = bench_module("synthetic")
    folder = tmp_path_factory.mktemp("synthetic") / "store"
    store = Store.from_settings(clean_settings(store=folder), embedder=embedder)
    synthetic.build(store, 2400)
    index = LexicalIndex(store)
    index.refresh()
    synthetic.build(store, 400, seed=14)
    index.refresh()
    assert len(index.segments) == 2 and index.size == 2800
    store.close()
    return folder


def synthetic_questions(count: int, seed: int = 99) -> list[str]:
    """Questions made of `synthetic_store`'s words (the same made-up vocabulary, drawn afresh)."""
    synthetic = bench_module("synthetic")
    writer = synthetic.Writer(seed)
    return [f"What did {writer.text(5).rstrip('.')} say?" for _ in range(count)]


class DossierServer:
    """A running Dossier (API + chat) on 127.0.0.1: its `url`, `settings`, `assistant`, `app` and upload folder."""

    def __init__(self, url: str, settings: Settings, assistant: object, background: object, app: object) -> None:
        self.url, self.settings, self.assistant, self._background = url, settings, assistant, background
        self.app = app

    def stop(self) -> None:
        self._background.stop()  # type: ignore[attr-defined]


def _start_dossier(
    folder: Path, demo_store: Path, embedder: Embedder, extra: list[Path], **overrides: object
) -> DossierServer:
    import shutil

    from assistant.api import BackgroundServer, create_app
    from assistant.chain import Assistant

    shutil.copytree(demo_store, folder / "store")
    settings = clean_settings(store=folder / "store", upload_dir=folder / "uploads", **overrides)
    assistant = Assistant.from_settings(settings, Store.from_settings(settings, embedder=embedder))
    if extra:
        assistant.stored.ingest(extra)
    app = create_app(settings, assistant)
    background = BackgroundServer(app).start()
    return DossierServer(background.url, settings, assistant, background, app)


@pytest.fixture
def start_dossier(tmp_path: Path, demo_store: Path, embedder: Embedder) -> Iterator[Callable[..., DossierServer]]:
    """Start Dossier on a free port with a fresh copy of the demo store; keyword arguments are Settings fields.

    `extra=[paths]` ingests more files first. Servers stop at the end of the test.
    """
    servers: list[DossierServer] = []

    def start(extra: list[Path] | None = None, **overrides: object) -> DossierServer:
        server = _start_dossier(tmp_path / f"dossier-{len(servers)}", demo_store, embedder, extra or [], **overrides)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory, demo_store: Path, embedder: Embedder
) -> Iterator[DossierServer]:
    """One Dossier per test module on the unchanged demo corpus (default settings): for tests that write nothing."""
    server = _start_dossier(tmp_path_factory.mktemp("dossier"), demo_store, embedder, [])
    yield server
    server.stop()


# -- answering: the demo store for questions, and a fake OpenAI-compatible LLM server ---------


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory: pytest.TempPathFactory, demo_store: Path) -> Path:
    """A copy of the demo store shared by one test module's tests, which only ask questions of it."""
    import shutil

    folder = tmp_path_factory.mktemp("demo-copy") / "store"
    shutil.copytree(demo_store, folder)
    return folder


@pytest.fixture
def demo_settings(settings: Settings, demo_copy: Path) -> Settings:
    """The isolated settings, pointing at the module's copy of the demo store (ask only, never write)."""
    return settings.with_overrides(store=demo_copy)


@pytest.fixture
def demo_assistant(demo_settings: Settings, embedder: Embedder) -> Assistant:
    """An extractive `Assistant` on the demo corpus (ask only, never write)."""
    from assistant.chain import Assistant

    return Assistant.from_settings(demo_settings, Store.from_settings(demo_settings, embedder=embedder))


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Callable[[str, dict[str, str]], Path]:
    """`ingested(name, {file name: text})`: a store folder holding those files, ingested once per session (ask only)."""
    from ingest.pipeline import ingest_paths

    made: dict[str, Path] = {}

    def make(name: str, files: dict[str, str]) -> Path:
        if name not in made:
            folder = tmp_path_factory.mktemp(name)
            for file_name, text in files.items():
                (folder / "files" / file_name).parent.mkdir(parents=True, exist_ok=True)
                (folder / "files" / file_name).write_text(text, encoding="utf-8")
            store = Store.from_settings(clean_settings(store=folder / "store"), embedder=embedder)
            report = ingest_paths([folder / "files"], store)
            assert report.stored and not report.skipped, report.to_json()
            made[name] = folder / "store"
        return made[name]

    return make


@pytest.fixture
def own_demo_settings(settings: Settings, tmp_path: Path, demo_store: Path) -> Settings:
    """Settings for this test's own copy of the demo store, for tests that ingest or remove."""
    import shutil

    shutil.copytree(demo_store, tmp_path / "own-demo")
    return settings.with_overrides(store=tmp_path / "own-demo")


@pytest.fixture
def citation_fields() -> set[str]:
    """The keys of each citation in an answer's JSON (`dossier ask --json`, /api/ask): the fields of `Citation`.

    Issue 3 names them; a rename of a `Citation` field must fail here, not silently change the JSON.
    """
    fields = {field.name for field in dataclasses.fields(Citation)}
    assert fields == {
        "n", "article_id", "title", "source", "published", "url", "passage", "sentence", "start", "end", "page", "score",
    }  # fmt: skip
    return fields


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAI]:
    """A small OpenAI-compatible chat server on 127.0.0.1 whose replies are computed from the prompt (tests/fake_openai.py)."""
    from fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def llm_settings(demo_settings: Settings, fake_llm: FakeOpenAI) -> Settings:
    """The demo store answered by `openai:fake-model` on the fake server (whose request log starts empty)."""
    fake_llm.requests.clear()
    return demo_settings.with_overrides(llm="openai:fake-model", openai_base_url=fake_llm.url)


# -- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless through Playwright, shared by one test module; skips when it is missing.

    Never `playwright install` (it downloads a browser): `make browser` installs Debian's chromium.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
