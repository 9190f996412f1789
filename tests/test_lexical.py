"""The persisted lexical index: delta updates score like a fresh bm25s build, survive restarts, crashes and damage."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bm25s
import numpy as np
import pytest
from click.testing import CliRunner

from assistant.cli import cli
from assistant.embeddings import Embedder
from assistant.filters import Filters
from assistant.lexical import EMPTY_TERM, MANIFEST, STALL_ENV, LexicalIndex
from assistant.settings import Settings
from assistant.store import Store
from assistant.text import terms
from ingest.pipeline import ingest_paths

QUERIES = [
    "harbour bridge Larsholm",
    "ferry strike pay rise crew",
    "apple harvest tonnes Vestdal",
    "museum maps renovation",
    "tram line Northgate kilometres",
    "glacier retreat survey Quorvath",
    "Larsholm Larsholm city",  # a repeated term counts twice, as in bm25s
    "zyxwv",
]
NEW_ARTICLE = """title: Quorvath glacier retreats 212 metres
date: 2024-06-03
source: Alpine Notes

The Quorvath glacier retreated 212 metres last year, survey teams in Larsholm said.
"""


def fresh_scores(store: Store, query: str) -> dict[str, float]:
    """chunk id -> score of bm25s built afresh over the store's current chunks (as the index was before)."""
    chunks = store.current_chunks()
    corpus = [terms(f"{c.passage.title} {c.passage.text}") or [EMPTY_TERM] for c in chunks]
    bm25 = bm25s.BM25()
    bm25.index(corpus, show_progress=False)
    words = [word for word in terms(query) if word in bm25.vocab_dict]
    scores = bm25.get_scores(words) if words else np.zeros(len(chunks))
    return {chunk.id: float(score) for chunk, score in zip(chunks, scores, strict=True)}


def index_scores(index: LexicalIndex, query: str) -> dict[str, float]:
    index.refresh()
    scores = index.scores(terms(query))
    return {index.chunk_ids[row]: float(scores[row]) for row in np.flatnonzero(index.live)}


def assert_same_as_fresh(index: LexicalIndex, store: Store) -> None:
    for query in QUERIES:
        expected, got = fresh_scores(store, query), index_scores(index, query)
        assert got.keys() == expected.keys(), query
        assert max((abs(got[cid] - expected[cid]) for cid in expected), default=0.0) < 1e-5, query
    assert index.size == len(store.current_chunks())


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


@pytest.fixture
def filled(settings: Settings, embedder: Embedder, corpus: Path) -> Store:
    """The embedded store in tmp_path holding the mini corpus."""
    store = Store.from_settings(settings, embedder=embedder)
    ingest_paths([corpus], store)
    return store


def rebuilt(caplog: pytest.LogCaptureFixture) -> bool:
    return any("lexical index rebuilt" in record.getMessage() for record in caplog.records)


def test_delta_updates_score_like_a_fresh_build(
    store_backend: Store, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_backend
    ingest_paths([corpus], store)
    index = LexicalIndex(store)
    index.refresh()
    assert_same_as_fresh(index, store)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="assistant.lexical")

    ingest_paths([write(tmp_path / "new", "quorvath.txt", NEW_ARTICLE)], store)  # an addition
    assert_same_as_fresh(index, store)
    assert len(index.segments) == 2
    assert "quorvath" in index.article_ids()

    bridge = corpus / "bridge.txt"  # a replacement: the article's old chunks are tombstoned
    bridge.write_text(bridge.read_text().replace("1,240 metres", "1,310 metres of steel"), encoding="utf-8")
    ingest_paths([corpus], store)
    assert_same_as_fresh(index, store)
    assert not index.live.all()

    store.remove("brief-museum")  # a removal
    assert_same_as_fresh(index, store)
    assert "brief-museum" not in index.article_ids()
    assert index.search("museum maps", 5, Filters(), None) == []
    assert not rebuilt(caplog)  # every step above was a delta


def test_a_new_process_loads_the_saved_index_without_rebuilding(filled: Store, tmp_path: Path) -> None:
    index = LexicalIndex(filled)
    index.refresh()
    ingest_paths([write(tmp_path / "new", "quorvath.txt", NEW_ARTICLE)], filled)
    expected = {query: index_scores(index, query) for query in QUERIES}  # saved with two segments

    got, log = run_index_process(tmp_path)

    assert "rebuilt" not in log
    assert got["generation"] == filled.generation()
    assert got["segments"] == 2
    for query in QUERIES:
        assert got["scores"][query].keys() == expected[query].keys()
        assert all(abs(got["scores"][query][cid] - expected[query][cid]) < 1e-6 for cid in expected[query])


INDEX_SCRIPT = """
import json, logging, sys
import numpy as np
from assistant.lexical import LexicalIndex
from assistant.filters import Filters
from assistant.settings import Settings
from assistant.store import Store
from assistant.text import terms

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
index = LexicalIndex(Store.from_settings(Settings()))
index.refresh()
queries = json.loads(sys.argv[1])
scores = {}
for query in queries:
    values = index.scores(terms(query))
    scores[query] = {index.chunk_ids[row]: float(values[row]) for row in np.flatnonzero(index.live)}
print(json.dumps({"generation": index.generation, "segments": len(index.segments), "scores": scores}))
"""


def index_process(tmp_path: Path, stall: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop(STALL_ENV, None)
    if stall:
        env[STALL_ENV] = stall
    return subprocess.Popen(
        [sys.executable, "-c", INDEX_SCRIPT, json.dumps(QUERIES)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_index_process(tmp_path: Path) -> tuple[dict, str]:
    process = index_process(tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out), err


@pytest.mark.parametrize("stage", ["segment", "manifest"])
def test_a_writer_killed_mid_write_leaves_a_loadable_index(
    filled: Store, tmp_path: Path, stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    LexicalIndex(filled).refresh()  # saved at this generation
    folder = filled.cache / filled.collection
    before = json.loads((folder / MANIFEST).read_text())
    ingest_paths([write(tmp_path / "new", "quorvath.txt", NEW_ARTICLE)], filled)
    marker = tmp_path / "stalled"

    process = index_process(tmp_path, f"{stage}:{marker}")  # applies the write, then stalls while saving it
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert json.loads((folder / MANIFEST).read_text()) == before  # the previous state is what is on disk
    assert any(
        entry.name.startswith((".tmp-", "seg-")) and entry.name not in before["segments"] for entry in folder.iterdir()
    )
    caplog.set_level(logging.INFO, logger="assistant.lexical")
    index = LexicalIndex(filled)
    assert_same_as_fresh(index, filled)
    assert not rebuilt(caplog)  # loaded the previous state and applied the log since it
    assert "quorvath" in index.article_ids()
    names = {entry.name for entry in folder.iterdir()}
    assert not any(name.startswith(".tmp-") for name in names)  # the next writer cleared the leftovers


def damage_format(folder: Path) -> str:
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "format": 0}))
    return "of format 0, not 1"


def damage_segment(folder: Path) -> str:
    manifest = json.loads((folder / MANIFEST).read_text())
    array = folder / manifest["segments"][0] / "post_rows.npy"
    array.write_bytes(array.read_bytes()[:-12])
    return "unreadable"


def damage_manifest(folder: Path) -> str:
    (folder / MANIFEST).write_text('{"format": 1, "segm')
    return "unreadable"


def damage_ids(folder: Path) -> str:
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / manifest["segments"][0] / "ids.json").write_text("[]")
    return "unreadable"


@pytest.mark.parametrize("damage", [damage_format, damage_segment, damage_manifest, damage_ids])
def test_an_old_or_damaged_index_is_rebuilt_with_a_message(
    filled: Store, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    LexicalIndex(filled).refresh()
    folder = filled.cache / filled.collection
    word = damage(folder)  # type: ignore[operator]
    caplog.set_level(logging.INFO, logger="assistant.lexical")

    index = LexicalIndex(filled)
    assert_same_as_fresh(index, filled)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(word in message and "rebuilding" in message for message in warnings), warnings
    assert rebuilt(caplog)
    assert json.loads((folder / MANIFEST).read_text())["format"] == 1  # saved afresh
    caplog.clear()
    assert_same_as_fresh(LexicalIndex(filled), filled)
    assert not rebuilt(caplog)


def test_compact_merges_segments_and_keeps_scores(
    filled: Store, corpus: Path, tmp_path: Path, settings: Settings
) -> None:
    index = LexicalIndex(filled)
    index.refresh()
    ingest_paths([write(tmp_path / "new", "quorvath.txt", NEW_ARTICLE)], filled)
    filled.remove("brief-museum")
    index.refresh()
    assert len(index.segments) == 2 and not index.live.all()

    result = CliRunner().invoke(cli, ["compact", "--store", str(settings.store)])

    assert result.exit_code == 0, result.output
    assert "2 segment(s) merged into 1" in result.output
    reloaded = LexicalIndex(filled)
    reloaded.refresh()
    assert len(reloaded.segments) == 1 and reloaded.live.all()
    assert_same_as_fresh(reloaded, filled)
    folder = filled.cache / filled.collection
    assert len([entry for entry in folder.iterdir() if entry.name.startswith("seg-")]) == 1


def test_the_write_log_tells_which_articles_each_generation_touched(filled: Store) -> None:
    since = filled.generation()
    filled.remove("brief-museum")
    changes = filled.changes(since)

    assert changes is not None
    generation, entries = changes
    assert generation == since + 1
    assert {article for entry in entries if entry.generation > since for article in entry.article_ids} == {
        "brief-museum"
    }
    assert filled.changes(-5) is None  # generations the log never saw cannot be told
