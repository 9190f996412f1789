"""Crash safety: an ingest killed with SIGKILL at any point leaves a store that readers can trust and a rerun completes.

The killed ingests run in subprocesses against the same embedded store as the test. The first test kills
a real ingest (real model) wherever it happens to be once it has stored something; the others kill the
writer deterministically between the steps of one write, using vectors computed here (no model load).
After a crash the test reopens the store, as a reader starting afterwards would: an embedded Chroma
client does not see vectors that another process added while it was open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.embeddings import Embedder
from assistant.settings import Settings
from assistant.store import _SWEEP_ID, SWEEP_GRACE_SECONDS, Store, chunk_id, chunk_metadata
from ingest.chunking import chunk_article
from ingest.loaders import load_file
from ingest.pipeline import ingest_paths

TOWNS = ["Larsholm", "Vestdal", "Brevik", "Alderport", "Skarvik", "Northgate", "Harrowby", "Kelmouth"]
TOPICS = [
    ("library", "opened a new reading room with {n} seats"),
    ("council", "approved a budget of {n} million crowns for road repairs"),
    ("harbour", "handled {n} thousand containers last month"),
    ("school", "hired {n} new teachers for the autumn term"),
    ("festival", "sold {n} hundred tickets on its first day"),
]

INGEST_SCRIPT = """
import sys
from assistant.settings import Settings
from assistant.store import Store
from ingest.pipeline import ingest_paths

settings = Settings()
ingest_paths([sys.argv[1]], Store.from_settings(settings), chunk_size=settings.chunk_size, batch_chunks=3)
print("finished", flush=True)
"""

# Kill this process with SIGKILL when Chroma is asked to `method` on collection `target`, then run one write.
WRITE_SCRIPT = """
import os, signal, sys
import numpy as np
from chromadb.api.models.Collection import Collection
from assistant.settings import Settings
from assistant.store import Store
from ingest.chunking import chunk_article
from ingest.loaders import load_file

path, vectors, target, method = sys.argv[1:5]
original = getattr(Collection, method)

def die(self, *args, **kwargs):
    if self.name == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)

setattr(Collection, method, die)
settings = Settings()
store = Store.from_settings(settings)
[article] = load_file(__import__("pathlib").Path(path)).articles
chunks = chunk_article(article, settings.chunk_size, settings.chunk_overlap)
store.write([(article, article.text_hash, chunks)], replacing=[article.id], vectors=np.load(vectors))
print("finished", flush=True)
"""


def write_articles(folder: Path, count: int, first: int = 0) -> list[Path]:
    """`count` short team-written articles with distinct text (one chunk each)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(first, first + count):
        town = TOWNS[number % len(TOWNS)]
        topic, action = TOPICS[number % len(TOPICS)]
        path = folder / f"{town.lower()}-{topic}-{number:03d}.txt"
        path.write_text(
            f"{town} {topic} report number {number}\n\n"
            f"The {town} {topic} {action.format(n=number + 7)}, officials said on day {number}. "
            f"Resident {number} welcomed the news.\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)  # carries the test's DOSSIER_STORE
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def assert_complete_and_consistent(store: Store) -> None:
    """Every article once; chunks exactly those of each article's current version; offsets match the text."""
    records = store.list_articles()
    assert len({record.id for record in records}) == len(records) == store.article_count()
    chunks = store.current_chunks()
    assert store.chunk_count() == len(chunks) == sum(record.chunks for record in records)  # no orphans
    assert len({chunk.id for chunk in chunks}) == len(chunks)
    versions = {record.id: record.version for record in records}
    for chunk in chunks:
        assert chunk.id.split("#")[1] == versions[chunk.passage.article_id]
    texts = {record.id: store.get_article(record.id).text for record in records}
    assert all(texts[c.passage.article_id][c.passage.start : c.passage.end] == c.passage.text for c in chunks)


def assert_every_chunk_is_found_by_its_vector(store: Store, embedder: Embedder, folders: list[Path]) -> None:
    """The vector index holds every current chunk: each is the nearest neighbour of its own embedding."""
    articles = [
        article for folder in folders for path in sorted(folder.iterdir()) for article in load_file(path).articles
    ]
    expected = {article.id: article for article in articles if store.get_article(article.id).version == article.version}
    chunks = [chunk for article in expected.values() for chunk in chunk_article(article)]
    vectors = embedder.encode([chunk.embed_text for chunk in chunks])
    assert len(chunks) == store.chunk_count()
    for chunk, vector in zip(chunks, vectors, strict=True):
        [nearest] = store.search(vector, k=1)
        assert nearest.chunk_id == chunk_id(chunk.article_id, str(chunk_metadata(chunk)["version"]), chunk.index)


def reopen(store: Store, settings: Settings, embedder: Embedder) -> Store:
    store.close()
    return Store.from_settings(settings, embedder=embedder)


def snapshot(store: Store, ids: set[str]) -> dict[str, tuple[str, str, list[str]]]:
    """Version, text and chunk texts of some articles, to check later that they were not touched."""
    chunks = store.current_chunks()
    return {
        article_id: (
            store.get_article(article_id).version,
            store.get_article(article_id).text,
            [chunk.passage.text for chunk in chunks if chunk.passage.article_id == article_id],
        )
        for article_id in ids
    }


def test_ingest_killed_part_way_is_completed_by_a_rerun(
    settings: Settings, store: Store, tmp_path: Path, corpus: Path, embedder: Embedder
) -> None:
    # Articles stored by an earlier, complete ingest must survive the crash untouched.
    earlier = ingest_paths([corpus], store)
    before = snapshot(store, set(earlier.added))
    batch = tmp_path / "batch"
    write_articles(batch, 40)
    total = len(before) + 40

    log = tmp_path / "ingest.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", INGEST_SCRIPT, str(batch)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 240
        while store.article_count() == len(before):
            assert process.poll() is None, f"the ingest ended before it stored anything: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the ingest stored nothing within 240 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        stdout, _ = process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert b"finished" not in stdout
    store = reopen(store, settings, embedder)

    stored_at_crash = store.article_count()
    assert len(before) < stored_at_crash < total, "the kill should land part-way through the batch"
    assert snapshot(store, set(before)) == before
    for chunk in store.current_chunks():  # readers only ever see complete, current versions
        assert (
            store.get_article(chunk.passage.article_id).text[chunk.passage.start : chunk.passage.end]
            == chunk.passage.text
        )

    rerun = ingest_paths([corpus, batch], store)

    assert len(rerun.added) == total - stored_at_crash
    assert len(rerun.unchanged) == stored_at_crash
    assert rerun.updated == [] and rerun.skipped == []
    assert store.article_count() == total
    assert_complete_and_consistent(store)
    assert snapshot(store, set(before)) == before
    assert ingest_paths([corpus, batch], store).chunks == 0  # and now everything is unchanged
    assert_every_chunk_is_found_by_its_vector(reopen(store, settings, embedder), embedder, [corpus, batch])


@pytest.fixture
def updated_bridge(store: Store, corpus: Path, tmp_path: Path, embedder: Embedder) -> tuple[Path, Path, str, str]:
    """The corpus stored; then bridge.txt changed on disk, with its new chunks' vectors saved for the writer."""
    ingest_paths([corpus], store)
    old_text = store.get_article("bridge").text
    path = corpus / "bridge.txt"
    path.write_text(path.read_text().replace("1,240 metres", "1,310 metres").replace("Henrik Sand", "Greta Holm"))
    [article] = load_file(path).articles
    vectors = tmp_path / "vectors.npy"
    np.save(vectors, embedder.encode([chunk.embed_text for chunk in chunk_article(article)]))
    return path, vectors, old_text, article.text


def kill_during_write(path: Path, vectors: Path, collection: str, method: str) -> None:
    process = subprocess.run(
        [sys.executable, "-c", WRITE_SCRIPT, str(path), str(vectors), collection, method],
        env=subprocess_env(),
        capture_output=True,
        timeout=120,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    assert b"finished" not in process.stdout


def passages_for(store: Store, embedder: Embedder, query: str) -> list[str]:
    return [passage.text for passage in store.search(embedder.encode_query(query), k=10)]


def test_crash_before_the_new_version_is_recorded_keeps_the_old_one_readable(
    settings: Settings, store: Store, corpus: Path, embedder: Embedder, updated_bridge: tuple[Path, Path, str, str]
) -> None:
    path, vectors, old_text, new_text = updated_bridge
    old_chunks = snapshot(store, {"bridge"})

    kill_during_write(path, vectors, "dossier-articles", "upsert")  # new chunks written, record not yet
    store = reopen(store, settings, embedder)

    assert store.chunk_count() > len(store.current_chunks())  # the new version's chunks are there...
    assert snapshot(store, {"bridge"}) == old_chunks  # ...but readers still see the whole old version
    assert store.get_article("bridge").text == old_text
    hits = passages_for(store, embedder, "The steel span is 1,310 metres long")
    assert any("1,240 metres" in hit for hit in hits)
    assert not any("1,310" in hit or "Greta Holm" in hit for hit in hits)

    rerun = ingest_paths([corpus], store)

    assert rerun.updated == ["bridge"]
    assert store.get_article("bridge").text == new_text
    assert_complete_and_consistent(store)
    assert not any("1,240" in hit for hit in passages_for(store, embedder, "The steel span is 1,240 metres long"))
    assert_every_chunk_is_found_by_its_vector(reopen(store, settings, embedder), embedder, [corpus])


def test_crash_before_the_old_chunks_are_removed_shows_only_the_new_version(
    settings: Settings, store: Store, corpus: Path, embedder: Embedder, updated_bridge: tuple[Path, Path, str, str]
) -> None:
    path, vectors, _, new_text = updated_bridge

    kill_during_write(path, vectors, "dossier", "delete")  # record says new; old chunks not yet deleted
    store = reopen(store, settings, embedder)

    assert store.chunk_count() > len(store.current_chunks())  # the old version's chunks are still there...
    assert store.get_article("bridge").text == new_text  # ...but the new version is complete and current
    bridge = [chunk.passage for chunk in store.current_chunks() if chunk.passage.article_id == "bridge"]
    assert [passage.text for passage in bridge] == [chunk.text for chunk in chunk_article(load_file(path).articles[0])]
    hits = passages_for(store, embedder, "Mayor Henrik Sand cut the ribbon; the span is 1,240 metres")
    assert not any("1,240" in hit or "Henrik Sand" in hit for hit in hits)
    assert any("Greta Holm" in hit for hit in hits)

    rerun = ingest_paths([corpus], store)

    assert rerun.updated == [] and rerun.added == []  # nothing to redo: the sweep just drops the leftovers
    assert_complete_and_consistent(store)
    assert store.get_article("bridge").version == load_file(path).articles[0].version
    assert_every_chunk_is_found_by_its_vector(reopen(store, settings, embedder), embedder, [corpus])


# -- a clean-up in one process while another writes ---------------------------------------------

# Sweep in a loop until the file argv[1] exists; print how many sweeps ran.
SWEEP_SCRIPT = """
import pathlib, sys
from assistant.settings import Settings
from assistant.store import Store

stop = pathlib.Path(sys.argv[1])
store = Store.from_settings(Settings())  # the model is never loaded: sweeping embeds nothing
sweeps = 0
while not stop.exists():
    store.sweep()
    sweeps += 1
print("sweeps", sweeps, flush=True)
"""

# Ingest a folder in small batches (many windows between chunks and records) and print the report as JSON.
INGEST_REPORT_SCRIPT = """
import json, sys
from assistant.settings import Settings
from assistant.store import Store
from ingest.pipeline import ingest_paths

settings = Settings()
report = ingest_paths([sys.argv[1]], Store.from_settings(settings), chunk_size=settings.chunk_size, batch_chunks=2)
print(json.dumps({"added": report.added, "skipped": report.to_json()["skipped"], "chunks": report.chunks}), flush=True)
"""


def write_long_articles(folder: Path, count: int) -> None:
    """`count` articles of several chunks each, so a write has many chunks in flight."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        town = TOWNS[number % len(TOWNS)]
        paragraphs = [
            f"The {town} {topic} {action.format(n=number * 10 + step)}, officials said in report {number}-{step}. "
            f"Resident {number}-{step} of {town} welcomed the news and asked for more details about it."
            for step, (topic, action) in enumerate(TOPICS * 3)
        ]
        text = f"{town} round-up number {number}\n\n" + "\n\n".join(paragraphs) + "\n"
        (folder / f"{town.lower()}-roundup-{number:03d}.txt").write_text(text, encoding="utf-8")


def test_a_sweep_in_another_process_never_deletes_an_ingest_in_flight(
    backend_settings: Settings, tmp_path: Path, embedder: Embedder
) -> None:
    """Once on the embedded store, once on a real Chroma server (both processes get its URL from the environment)."""
    folder = tmp_path / "batch"
    write_long_articles(folder, 24)
    stop = tmp_path / "stop-sweeping"
    # The store exists before the two processes open it: two first openings of one folder at once race in
    # Chroma's own schema set-up ("table collections already exists"), which is not what this test is about.
    Store.from_settings(backend_settings, embedder=embedder)
    sweeper = subprocess.Popen(
        [sys.executable, "-c", SWEEP_SCRIPT, str(stop)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ingest = subprocess.run(
            [sys.executable, "-c", INGEST_REPORT_SCRIPT, str(folder)],
            env=subprocess_env(),
            capture_output=True,
            timeout=300,
        )
    finally:
        stop.touch()
        sweeper_out, sweeper_err = sweeper.communicate(timeout=120)
    assert ingest.returncode == 0, ingest.stderr.decode()[-2000:]
    assert sweeper.returncode == 0, sweeper_err.decode()[-2000:]
    sweeps = int(sweeper_out.split()[-1])
    assert sweeps >= 3, "the sweeper should have run during the ingest"
    report = __import__("json").loads(ingest.stdout.decode().splitlines()[-1])

    store = Store.from_settings(backend_settings, embedder=embedder)
    records = store.list_articles()
    assert report["skipped"] == [] and len(report["added"]) == 24 == len(records)
    per_article = Counter(chunk.passage.article_id for chunk in store.current_chunks())
    assert all(per_article[record.id] == record.chunks > 1 for record in records)
    assert report["chunks"] == sum(record.chunks for record in records)
    assert store.incomplete() == set()
    assert_complete_and_consistent(store)
    assert ingest_paths([folder], store).chunks == 0  # everything is there, so everything is unchanged


def test_sweep_keeps_a_fresh_orphan_and_deletes_an_old_one(settings: Settings, store: Store, corpus: Path) -> None:
    import chromadb

    ingest_paths([corpus], store)
    collection = chromadb.PersistentClient(path=str(settings.store)).get_collection(settings.collection)
    [vector] = collection.get(limit=1, include=["embeddings"])["embeddings"]
    now = time.time()
    orphans = {
        "fresh#v1#0": {"article_id": "fresh", "version": "v1", "written_at": now},
        "old#v1#0": {"article_id": "old", "version": "v1", "written_at": now - SWEEP_GRACE_SECONDS - 60},
        "legacy#v1#0": {"article_id": "legacy", "version": "v1"},  # stored before chunks had a written_at
        "bridge#v0#0": {"article_id": "bridge", "version": "v0", "written_at": now},  # another version, fresh
    }
    collection.upsert(
        ids=list(orphans),
        embeddings=[vector] * len(orphans),
        documents=["orphan"] * len(orphans),
        metadatas=list(orphans.values()),
    )
    current = {chunk.id for chunk in store.current_chunks()}

    assert store.sweep(everything=True).deleted == 2  # these orphans were never logged: only a full read finds them

    left = set(collection.get(include=[])["ids"])
    assert left == current | {"fresh#v1#0", "bridge#v0#0"}
    assert store.incomplete() == set()


def test_a_sweep_reads_only_the_articles_of_unfinished_writes_and_finds_their_leftovers(
    store: Store, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal that died before deleting its chunks, and a write that died before its record, leave intents
    behind; the next sweep reads only those articles (not the whole store) and deletes what they left."""
    store.sweep_grace = 0.5
    ingest_paths([corpus], store)  # its sweep is the store's first: a whole one
    before = {chunk.id for chunk in store.current_chunks()}
    bridge = {cid for cid in before if cid.startswith("bridge#")}

    def fail(**kwargs: Any) -> None:
        raise RuntimeError("the process died here")

    with monkeypatch.context() as dying:
        dying.setattr(store._chunks, "delete", fail)
        with pytest.raises(RuntimeError):
            store.remove("bridge")  # the record went, the chunks did not
    ghost_file = tmp_path / "ghost.txt"
    ghost_file.write_text("A ghost article\n\nIt was never committed: its writer died before its record.\n")
    [ghost] = load_file(ghost_file).articles
    ghost_chunks = chunk_article(ghost, 900, 0)
    with monkeypatch.context() as dying:
        dying.setattr(store._articles, "upsert", fail)
        with pytest.raises(RuntimeError):
            store.write([(ghost, ghost.text_hash, ghost_chunks)])  # the chunks went in, the record did not
    time.sleep(1.0)  # both leftovers are now older than the grace
    reads: list[dict[str, Any]] = []
    for collection in (store._chunks, store._articles):
        monkeypatch.setattr(collection, "get", _recording(collection.get, reads))

    swept = store.sweep()

    assert swept.deleted == len(bridge) + len(ghost_chunks)
    assert reads and all(read.get("where") or read.get("ids") for read in reads), "no whole read of the store"
    assert {chunk.id for chunk in store.current_chunks()} == before - bridge
    assert store._meta.get(where={"kind": "intent"}, include=[])["ids"] == []  # done with: deleted
    assert_complete_and_consistent(store)


def _recording(get: Callable[..., Any], reads: list[dict[str, Any]]) -> Callable[..., Any]:
    def recorded(**kwargs: Any) -> Any:
        reads.append(kwargs)
        return get(**kwargs)

    return recorded


@pytest.fixture
def deleting_between_chunks_and_records(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Callable[[int], None]:
    """Make the next writes lose their chunks (deleted as a clean-up of old would) just after writing them, `times` times."""

    def arm(times: int) -> None:
        chunks, upsert = store._chunks, store._chunks.upsert
        left = [times]

        def upsert_then_lose(**kwargs: Any) -> None:
            upsert(**kwargs)
            if left[0] > 0:
                left[0] -= 1
                chunks.delete(ids=kwargs["ids"])

        monkeypatch.setattr(chunks, "upsert", upsert_then_lose)

    return arm


def test_a_write_whose_chunks_vanish_writes_them_again(
    store: Store, corpus: Path, deleting_between_chunks_and_records: Callable[[int], None]
) -> None:
    deleting_between_chunks_and_records(1)

    report = ingest_paths([corpus], store)

    assert len(report.added) == 5 and report.skipped == []
    assert store.incomplete() == set()
    assert_complete_and_consistent(store)


def test_a_write_whose_chunks_vanish_twice_is_reported_and_redone_by_the_next_ingest(
    store: Store, corpus: Path, deleting_between_chunks_and_records: Callable[[int], None]
) -> None:
    deleting_between_chunks_and_records(2)

    report = ingest_paths([corpus], store, batch_chunks=10_000)  # one write: both upserts of it lose their chunks

    assert report.added == [] and report.chunks == 0
    assert len(report.skipped) == 5
    assert all("deleted by another process" in item.reason for item in report.skipped)
    assert store.article_count() == 0  # no record promises chunks that are not there

    rerun = ingest_paths([corpus], store)
    assert len(rerun.added) == 5 and rerun.unchanged == []
    assert_complete_and_consistent(store)


def test_an_article_whose_chunks_were_lost_earlier_is_written_again(store: Store, corpus: Path) -> None:
    ingest_paths([corpus], store)
    store._chunks.delete(where={"article_id": "bridge"})  # as the clean-up before verified writes could leave it
    store._meta.delete(ids=[_SWEEP_ID])  # as in a store of that version, which never swept the whole store since
    assert store.incomplete() == {"bridge"} == store.sweep().incomplete

    rerun = ingest_paths([corpus], store)

    assert rerun.updated == ["bridge"] and len(rerun.unchanged) == 4
    assert store.incomplete() == set()
    assert_complete_and_consistent(store)
