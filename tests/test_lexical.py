"""The persisted lexical index: delta updates score like a fresh bm25s build, survive restarts, crashes and damage."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import bm25s
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import synthetic_questions

from assistant import lexical
from assistant.cli import cli
from assistant.embeddings import Embedder
from assistant.filters import Filters
from assistant.lexical import (
    EMPTY_TERM,
    MANIFEST,
    MERGE_FACTOR,
    MERGE_FLOOR,
    MERGE_SHARE,
    STALL_ENV,
    LexicalIndex,
)
from assistant.models import Passage
from assistant.retrieval import Retriever
from assistant.settings import Settings
from assistant.store import Store
from assistant.text import terms
from ingest.chunking import chunk_article
from ingest.models import Article
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

    bridge = corpus / "bridge.txt"  # a replacement: the article's old chunks are tombstoned (or merged away)
    old = {cid for cid in index.positions if cid.startswith("bridge#")}
    bridge.write_text(bridge.read_text().replace("1,240 metres", "1,310 metres of steel"), encoding="utf-8")
    ingest_paths([corpus], store)
    assert_same_as_fresh(index, store)
    assert old and old.isdisjoint(index.positions)

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


def write_article(store: Store, article_id: str, text: str, source: str = "Bench Wire", day: int = 1) -> None:
    """Store one article with random (unit) vectors: the lexical index reads texts only, so no model is needed."""
    article = Article(
        id=article_id, title=f"Report {article_id}", text=text, source=source, published=f"2024-07-{day:02d}"
    )
    chunks = chunk_article(article, size=200)
    vectors = np.random.default_rng(len(store.versions())).normal(size=(len(chunks), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.write([(article, article.text_hash, chunks)], replacing=[article_id], vectors=vectors)


def update_text(n: int) -> str:
    towns = ["Larsholm", "Vestdal", "Quorvath", "Northgate"]
    return " ".join(
        f"The {towns[(n + i) % 4]} council approved {n * 7 + i} new benches for the harbour parks on Tuesday."
        for i in range(1 + n % 5)
    )


def assert_derived_from_segments(index: LexicalIndex) -> None:
    """The row-aligned arrays and id maps equal what the segments and tombstones give when derived in one go."""
    chunk_ids = [cid for segment in index.segments for cid in segment.chunk_ids]
    sources: dict[str, int] = {}
    articles: dict[str, int] = {}
    source_codes = [sources.setdefault(s, len(sources)) for segment in index.segments for s in segment.sources]
    article_codes = [articles.setdefault(a, len(articles)) for segment in index.segments for a in segment.article_ids]
    assert index.chunk_ids == chunk_ids
    assert index.positions == {cid: row for row, cid in enumerate(chunk_ids) if index.live[row]}
    assert list(index.source_index.items()) == list(sources.items())
    assert list(index.article_index.items()) == list(articles.items())
    assert index.source_codes.tolist() == source_codes and index.article_codes.tolist() == article_codes
    for key, got in (("lengths", index.lengths), ("published", index.published), ("weights", index.weights)):
        expected = np.concatenate([np.asarray(segment.arrays[key]) for segment in index.segments])
        assert np.array_equal(got, expected), key
    assert list(index._offsets) == list(np.cumsum([0] + [segment.rows for segment in index.segments]))


def assert_same_state(got: LexicalIndex, expected: LexicalIndex) -> None:
    assert got.chunk_ids == expected.chunk_ids and got.positions == expected.positions
    assert got.source_index == expected.source_index and got.article_index == expected.article_index
    for key in ("live", "lengths", "published", "weights", "source_codes", "article_codes", "_df"):
        assert np.array_equal(getattr(got, key), getattr(expected, key)), key
    assert got.terms == expected.terms


def by_chunk(index: LexicalIndex, values: np.ndarray) -> dict[str, object]:
    return {index.chunk_ids[row]: values[row].item() for row in np.flatnonzero(index.live)}


FILTERS = [
    Filters(),
    Filters(sources=("Second Wire",)),
    Filters(article_ids=("update-3", "brief-museum")),
    Filters(since=date(2024, 7, 3)),
    Filters(until=date(2024, 7, 2)),
]


def test_an_index_updated_in_place_equals_one_derived_afresh(filled: Store) -> None:
    index = LexicalIndex(filled)
    index.refresh()
    merges = 0
    for n in range(12):  # additions, replacements (same ids, new text) and removals, with merges among them
        write_article(filled, f"update-{n % 7}", update_text(n), "Second Wire" if n % 3 else "Bench Wire", 1 + n % 5)
        if n == 9:
            filled.remove("brief-museum")
        before = {segment.name for segment in index.segments}
        index.refresh()
        merges += not before <= {segment.name for segment in index.segments}
        assert_derived_from_segments(index)
    assert merges, "no update merged segments: the test no longer covers merges"

    loaded = LexicalIndex(filled)  # a new process's index: derived in one go from the segments on disk
    loaded.refresh()
    assert_same_state(index, loaded)
    fresh = LexicalIndex(filled)
    fresh.folder = None  # built from every current chunk in memory
    fresh.refresh()  # one segment, rows in another order: compared chunk by chunk
    assert_same_as_fresh(index, filled)
    for filters in FILTERS:
        assert by_chunk(index, index.mask(filters, None)) == by_chunk(fresh, fresh.mask(filters, None)), filters
    for query in QUERIES:
        got, expected = by_chunk(index, index.scores(terms(query))), by_chunk(fresh, fresh.scores(terms(query)))
        assert got.keys() == expected.keys()
        assert all(abs(got[cid] - expected[cid]) < 1e-5 for cid in got), query  # type: ignore[operator]


@pytest.mark.parametrize("floor", [MERGE_FLOOR, 0])
def test_many_small_updates_keep_segments_few_and_never_rewrite_a_large_one(
    filled: Store, floor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("assistant.lexical.MERGE_FLOOR", floor)  # 0: the share alone bounds a merge, as in a big index
    index = LexicalIndex(filled)
    index.refresh()
    base = index.segments[0].name
    most = 0
    for n in range(60):
        write_article(filled, f"small-{n}", update_text(n))
        before = list(index.segments)
        index.refresh()
        now = {segment.name for segment in index.segments}
        rewritten = sum(segment.rows for segment in before if segment.name not in now)  # merged into a new one
        most = max(most, rewritten)
        assert rewritten <= max(MERGE_SHARE * len(index.live), floor)
    rows = len(index.live)
    if floor == 0:
        assert index.segments[0].name == base  # the big first segment was never rewritten
    assert most > 0  # merges happened
    # Sizes fall geometrically but for segments the share kept from merging (each over half the share of the rows).
    bound = 2 + math.ceil(math.log(rows, MERGE_FACTOR)) + (0 if rows * MERGE_SHARE < floor else 2 / MERGE_SHARE)
    assert len(index.segments) <= bound, [segment.rows for segment in index.segments]
    assert_same_as_fresh(index, filled)
    assert_derived_from_segments(index)


@pytest.mark.parametrize(
    ("filters", "as_of"),
    [(Filters(), None), (Filters(), date(2024, 1, 1)), (Filters(sources=("Outlet 03 Daily", "Outlet 17 Daily")), None)],
    ids=["all", "as-of", "two-outlets"],
)
def test_the_keyword_top_n_equals_scoring_every_row(
    synthetic_store: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, filters: Filters, as_of: date | None
) -> None:
    index = LexicalIndex(Store.from_settings(Settings(store=synthetic_store), embedder=embedder))
    index.refresh()
    scored_every_row = 0
    all_scores = index._all_scores

    def counted(weighted: list[tuple[int, np.float32]]) -> np.ndarray:
        nonlocal scored_every_row
        scored_every_row += 1
        return all_scores(weighted)

    questions = synthetic_questions(60)
    for question in questions:
        monkeypatch.setattr(index, "_all_scores", counted)
        got = index.top(question, 20, filters, as_of)
        monkeypatch.setattr(index, "_all_scores", all_scores)
        mask = index.mask(filters, as_of)
        every = index.scores(terms(question)) * index.weights * mask
        ranked = sorted(((float(every[row]), index.chunk_ids[row]) for row in np.flatnonzero(every)), reverse=True)
        assert [score for _, score in got] == pytest.approx([score for score, _ in ranked[:20]], rel=1e-6), question
        if len(ranked) > 20:  # the same chunks, but for ties at the n-th score
            cut = ranked[19][0] * (1 + 1e-6)
            assert {cid for score, cid in ranked if score > cut} <= {cid for cid, _ in got}, question
    # Most questions were answered from their rarest words' rows, without scoring every row (at this size, under an
    # as-of date that keeps half the rows, 25 of 60 questions were; without filters, more).
    assert scored_every_row < len(questions) * 0.75


def test_a_rebuild_in_slices_scores_like_a_fresh_build(
    filled: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pages = list(filled.current_chunk_pages(page=2))  # the store read a page at a time holds every current chunk
    assert len(pages) > 2 and sorted(chunk.id for page in pages for chunk in page) == sorted(
        chunk.id for chunk in filled.current_chunks()
    )
    monkeypatch.setattr(lexical, "REBUILD_SLICE", 3)  # several slices, each adding terms, merged into one segment
    caplog.set_level(logging.INFO, logger="assistant.lexical")
    index = LexicalIndex(filled, tmp_path / "fresh-index")
    index.refresh()
    assert rebuilt(caplog)
    assert len(index.segments) == 1
    assert_same_as_fresh(index, filled)
    assert_derived_from_segments(index)


def test_a_refresh_waits_for_a_question_reading_the_index(
    filled: Store, settings: Settings, embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A question reads one state of the index: a refresh in another thread of the same process (a server applying
    another process's write) changes it only once the questions already reading are done."""
    retriever = Retriever(filled)
    retriever.retrieve("Larsholm harbour bridge", k=3)  # the index is loaded and current
    reading, release = threading.Event(), threading.Event()
    passages = filled.passages

    def held(ids: list[str]) -> list[Passage | None]:  # the question stops while it reads the kept passages' texts
        reading.set()
        release.wait(30)
        return passages(ids)

    monkeypatch.setattr(filled, "passages", held)
    answers: list[list[Passage]] = []
    question = threading.Thread(target=lambda: answers.append(retriever.retrieve("Larsholm bridge", k=3).passages))
    question.start()
    assert reading.wait(30)
    writer = Store.from_settings(settings, embedder=embedder)  # another writer, as another process would be
    ingest_paths([write(tmp_path / "new", "quorvath.txt", NEW_ARTICLE)], writer)
    refresh = threading.Thread(target=retriever.lexical.refresh)
    refresh.start()
    refresh.join(1.0)  # a delta on this store takes a few hundredths of a second when nothing holds it back
    assert refresh.is_alive() and "quorvath" not in retriever.lexical.article_ids()
    release.set()
    question.join(30)
    refresh.join(30)
    assert not refresh.is_alive() and "quorvath" in retriever.lexical.article_ids()
    assert answers and all(passage.text for passage in answers[0])
