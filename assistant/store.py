"""The Chroma store: article chunks with their embeddings, article records, and a generation counter.

Three collections share a name prefix: `NAME` (chunks, cosine HNSW), `NAME-articles` (one record per
article: cleaned text, metadata, the version its current chunks belong to) and `NAME-meta` (the
embedding model, the store's identity and a generation number bumped on every write, so readers know
when to reload, plus a write log: which articles each generation touched, so a reader at generation g
re-reads only what generations g+1.. changed; see `changes`).

Writes are ordered for crash safety: new chunks first, then the article record that makes them
current (and the generation bump that tells readers), then removal of the old version's chunks. A chunk
whose version differs from its article's record is invisible to readers (`search` and `current_chunks`
skip it) and is swept away by a later write (`sweep`). Before anything else, a write or removal records its
intent (the articles it is about to touch) and deletes that record once done, so whatever an interrupted one
leaves belongs to an article an intent still names, and a sweep reads only those articles, not the whole store.

The store owns its schema: the metadata Chroma keeps beside a chunk or an article record is made from the typed
records and read back into them here, one function each way (`chunk_metadata` / `passage_of`, `article_metadata` /
`article_record`), and `Filters` become a Chroma `where` here too (`chroma_where`). Raw Chroma result dicts and
`where` clauses never leave this module.

Several processes may write at once (two ingests, an upload during an ingest), so a chunk without a
current record may be a leftover or may belong to a writer about to commit it. Every chunk and record
carries `written_at` (epoch seconds), and the sweep only deletes a chunk that is older than
`SWEEP_GRACE_SECONDS` or older than its article's current record (superseded by a later write); a write
checks after committing its records that every article's chunks are there, and rewrites them if not.

A running reader sees every process's writes. Its SQLite reads (records, chunk texts, the generation) are
current anyway; an embedded Chroma client's vector index is not (see `fresh_embedded_client`), so a vector
query after a generation this process did not write reopens the embedded store first.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from assistant.dates import published_ordinal
from assistant.embeddings import Embedder
from assistant.errors import ConfigError, NotFoundError
from assistant.filters import Filters
from assistant.models import ArticleRecord, Passage
from assistant.reader import content_words
from assistant.settings import Settings
from assistant.text import clean_untrusted
from assistant.word_vectors import WordVectors, cache_path
from ingest.models import Article, Chunk, Swept

_META_ID = "store"
_SWEEP_ID = "sweep"  # in the meta collection: a whole-store sweep has run (leftovers older than intents are gone)
# How old a chunk without a current record must be before `sweep` deletes it. Younger ones may belong to a
# write still in progress in another process; a write batch (about 512 chunks) takes seconds, so this leaves
# a wide margin, also for clocks of clients of one Chroma server that disagree by a few minutes.
SWEEP_GRACE_SECONDS = 15 * 60
# Generations the write log keeps; a reader further behind than this reloads everything.
LOG_GENERATIONS = 5000
# The values Chroma stores beside a record (see `chunk_metadata` and `article_metadata`).
ChromaMetadata = dict[str, str | int | float | bool]


def chunk_id(article_id: str, version: str, index: int) -> str:
    return f"{article_id}#{version}#{index}"


@dataclass(frozen=True)
class StoredChunk:
    """A current chunk as loaded for the lexical index."""

    id: str
    passage: Passage


@dataclass(frozen=True)
class LogEntry:
    """One write in the store's log: its generation and the articles it wrote or removed."""

    id: str
    generation: int
    article_ids: frozenset[str]


class LazyEmbedder:
    """Builds the configured `Embedder` when called: listing articles should not load a model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_name = settings.embedding_model

    def __call__(self) -> Embedder:
        return Embedder(
            self.settings.embedding_model, self.settings.embedding_dtype, self.settings.embedding_batch_size
        )


def open_client(settings: Settings) -> Any:
    """A Chroma client: an HTTP client when `chroma_url` is set, else a persistent one at `store`."""
    import chromadb

    if settings.chroma_url:
        parsed = urlparse(settings.chroma_url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ConfigError(f"chroma_url {settings.chroma_url!r} is not a URL like http://127.0.0.1:8000")
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 80),
                ssl=parsed.scheme == "https",
            )
            client.heartbeat()
        except Exception as exc:
            raise ConfigError(f"cannot reach the Chroma server at {settings.chroma_url}: {exc}") from exc
        return client
    settings.store.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.store))


class _PrivateClient:
    """The few client calls `Store` makes, on a Chroma system of its own (see `fresh_embedded_client`)."""

    def __init__(self, system: Any, server: Any) -> None:
        self._system, self._server = system, server

    def get_or_create_collection(self, name: str, embedding_function: Any = None, configuration: Any = None) -> Any:
        from chromadb.api.models.Collection import Collection

        model = self._server.get_or_create_collection(name=name, configuration=configuration)
        return Collection(client=self._server, model=model, embedding_function=embedding_function)

    def get_max_batch_size(self) -> int:
        return int(self._server.get_max_batch_size())

    def close(self) -> None:
        self._system.stop()


def fresh_embedded_client(path: Path) -> Any:
    """A client of the embedded store at `path` that loads the vector index as it is on disk now.

    chromadb shares one system per folder within a process, and that system keeps each collection's vector
    index as it first loaded it: vectors that another process added later are missing from its queries (its
    SQLite reads do see them, so the article is listed but not found by meaning). A system of its own,
    not shared with other clients of the folder in this process, loads the index afresh.
    """
    import chromadb
    from chromadb.api import ServerAPI
    from chromadb.config import System

    system = System(chromadb.Settings(is_persistent=True, persist_directory=str(path), anonymized_telemetry=False))
    server = system.instance(ServerAPI)  # type: ignore[type-abstract]  # chromadb picks the implementation
    system.start()
    return _PrivateClient(system, server)


class Store:
    """Articles and their embedded chunks in Chroma.

    >>> store = Store.from_settings(Settings(store="/tmp/dossier-store"))    # doctest: +SKIP
    >>> store.article_count()                                               # doctest: +SKIP
    0
    """

    def __init__(
        self,
        client: Any,
        collection: str,
        embedder: Embedder | Callable[[], Embedder],
        location: str = "",
        sweep_grace: float = SWEEP_GRACE_SECONDS,
        reopen: Callable[[], Any] | None = None,
        cache: Path | None = None,
        word_cache: Path | None = None,
    ) -> None:
        """`reopen` makes a fresh client of the same embedded store (None for a Chroma server, whose clients
        all see one index): it is called before a vector query when another process wrote since the last.
        `cache` is a local folder for indexes derived from the store (the lexical index); None keeps them
        in memory only. `word_cache` is the local folder of the word vector cache (`assistant.word_vectors`),
        shared by the stores of one model; None keeps it in memory."""
        self.cache = cache
        self.collection = collection
        self._embedder = embedder
        self.sweep_grace = sweep_grace
        self.model_name = embedder.model_name if isinstance(embedder, Embedder) else getattr(embedder, "model_name", "")
        self.location = location
        self._name = collection
        self._reopen = reopen
        self._reopen_lock = threading.Lock()
        self._retired: Any = None  # the client before the last reopen, closed at the next one (see `_fresh_vectors`)
        self._open(client)
        self.words = WordVectors(
            cache_path(word_cache, self.model_name) if word_cache else None, lambda words: self.embedder.encode(words)
        )
        self._current: tuple[int, dict[str, str]] = (-1, {})  # (generation, article id -> current version)
        self._check_model()
        self._vector_generation = self.generation()  # the generation this client's vector index holds

    def _open(self, client: Any) -> None:
        self._client = client
        self._chunks = client.get_or_create_collection(
            self._name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        self._articles = client.get_or_create_collection(f"{self._name}-articles", embedding_function=None)
        self._meta = client.get_or_create_collection(f"{self._name}-meta", embedding_function=None)

    def _fresh_vectors(self) -> None:
        """Reopen the embedded store when another process wrote since this client's vector index was loaded.

        The previous client may still serve a question in another thread, so it is closed at the next reopen.
        """
        if self._reopen is None:
            return
        generation = self.generation()
        if generation == self._vector_generation:
            return
        with self._reopen_lock:
            if generation == self._vector_generation:
                return
            fresh = self._reopen()
            if self._retired is not None:
                self._retired.close()
            self._retired = self._client
            self._open(fresh)
            self._vector_generation = generation

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder | None = None) -> Store:
        """Open (or create) the configured store; the embedding model loads only when first needed."""
        location = settings.chroma_url or str(settings.store)
        reopen = None if settings.chroma_url else lambda: fresh_embedded_client(settings.store)
        # A server's store is cached on this machine beside the embedded store's folder, one folder per server.
        cache = settings.store / "lexical"
        if settings.chroma_url:
            cache = settings.store.parent / "lexical-servers" / re.sub(r"[^A-Za-z0-9.-]+", "_", settings.chroma_url)
        return cls(
            open_client(settings),
            settings.collection,
            embedder or LazyEmbedder(settings),
            location,
            reopen=reopen,
            cache=cache,
            word_cache=settings.store,
        )

    @property
    def embedder(self) -> Embedder:
        if not isinstance(self._embedder, Embedder):
            self._embedder = self._embedder()
        return self._embedder

    # -- bookkeeping ---------------------------------------------------------------------------

    def _meta_record(self) -> dict[str, Any]:
        got = self._meta.get(ids=[_META_ID], include=["metadatas"])
        return dict(got["metadatas"][0]) if got["ids"] else {}

    def _check_model(self) -> None:
        meta = self._meta_record()
        if meta and meta.get("embedding_model") != self.model_name:
            raise ConfigError(
                f"the store at {self.location} was built with embedding model {meta.get('embedding_model')!r}, "
                f"not {self.model_name!r}: use that model, or another --store"
            )

    def generation(self) -> int:
        """A number that changes whenever articles are written or removed."""
        return int(self._meta_record().get("generation", 0))

    def store_id(self) -> str:
        """The store's identity (set at its first write), so a local cache of it is not taken for another's."""
        return str(self._meta_record().get("store_id", ""))

    def _bump(self, article_ids: Collection[str] = ()) -> None:
        """Raise the generation, logging first which articles the write touched (see `changes`)."""
        meta = self._meta_record()
        generation = int(meta.get("generation", 0))
        # The log entry goes before the bump: a reader that sees the new generation finds its entry.
        self._meta.upsert(
            ids=[f"log-{uuid.uuid4().hex}"],
            embeddings=[[1.0]],
            metadatas=[{"kind": "log", "generation": generation + 1, "articles": json.dumps(sorted(article_ids))}],
        )
        meta.update(embedding_model=self.model_name, generation=generation + 1)
        meta.setdefault("store_id", uuid.uuid4().hex)
        self._meta.upsert(ids=[_META_ID], embeddings=[[1.0]], metadatas=[meta])
        if generation + 1 > LOG_GENERATIONS:
            self._meta.delete(
                where={"$and": [{"kind": "log"}, {"generation": {"$lte": generation + 1 - LOG_GENERATIONS}}]}
            )
        if generation == self._vector_generation:  # our own write: this client's vector index has it
            self._vector_generation = generation + 1

    def changes(self, since: int) -> tuple[int, list[LogEntry]] | None:
        """The generation now and the write log's entries from generation `since` on (its own included).

        None when the log cannot tell what generations `since`+1.. touched (entries pruned, or written before
        the log existed): the caller reloads everything. Entries of `since` itself come too: two writers racing
        may log one generation twice, and a caller that remembers the entry ids it applied skips those.
        """
        generation = self.generation()
        got = _get_all(self._meta, ["metadatas"], where={"$and": [{"kind": "log"}, {"generation": {"$gte": since}}]})
        entries = [
            LogEntry(entry_id, int(meta["generation"]), frozenset(json.loads(str(meta.get("articles", "[]")))))
            for entry_id, meta in zip(got["ids"], got["metadatas"], strict=True)
        ]
        if not {entry.generation for entry in entries}.issuperset(range(since + 1, generation + 1)):
            return None
        return generation, entries

    def _batches(self, items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        size = max(1, min(self._client.get_max_batch_size(), 4000))
        for start in range(0, len(items), size):
            yield items[start : start + size]

    # -- writing -------------------------------------------------------------------------------

    def _intend(self, article_ids: Collection[str]) -> str:
        """Record that a write or removal of `article_ids` begins; returns the record's id, to delete once done."""
        intent = f"intent-{uuid.uuid4().hex}"
        self._meta.upsert(
            ids=[intent],
            embeddings=[[1.0]],
            metadatas=[{"kind": "intent", "articles": json.dumps(sorted(article_ids)), "written_at": time.time()}],
        )
        return intent

    def versions(self, article_ids: Collection[str] | None = None) -> dict[str, tuple[str, str]]:
        """article id -> (version, text hash) for every stored article, or for those of `article_ids` stored."""
        if article_ids is None:
            return self._versions(_get_all(self._articles, ["metadatas"]))
        found: dict[str, tuple[str, str]] = {}
        for batch in self._batches(sorted(article_ids)):
            found.update(self._versions(self._articles.get(ids=list(batch), include=["metadatas"])))
        return found

    def text_owners(self, text_hashes: Collection[str]) -> dict[str, set[str]]:
        """text hash -> the ids of stored articles with that text, for those of `text_hashes` stored."""
        owners: defaultdict[str, set[str]] = defaultdict(set)
        for batch in self._batches(sorted(text_hashes)):
            got = _get_all(self._articles, ["metadatas"], where={"text_hash": {"$in": list(batch)}})
            for article_id, (_, text_hash) in self._versions(got).items():
                owners[text_hash].add(article_id)
        return dict(owners)

    @staticmethod
    def _versions(got: dict[str, Any]) -> dict[str, tuple[str, str]]:
        return {
            article_id: (str(meta.get("version", "")), str(meta.get("text_hash", "")))
            for article_id, meta in zip(got["ids"], got["metadatas"], strict=True)
        }

    def write(
        self,
        items: Sequence[tuple[Article, str, list[Chunk]]],
        replacing: Collection[str] = (),
        vectors: np.ndarray | None = None,
    ) -> list[str]:
        """Store articles (each with its text hash) and their chunks; old chunks of `replacing` ids go last.

        `vectors` holds the chunks' embeddings in order; they are computed here when not given.

        Once the records are written, each article's chunks are counted: any that another process deleted
        meanwhile are written again, and an article still incomplete after that loses its record (so the next
        ingest adds it again rather than calling it unchanged). Returns the ids of such failed articles.
        """
        chunks = [chunk for _, _, article_chunks in items for chunk in article_chunks]
        intent = self._intend([article.id for article, _, _ in items])
        if vectors is None:
            vectors = self.embedder.encode([chunk.embed_text for chunk in chunks], bulk=True)
            # The reader's word vectors of these chunks, computed now so no question waits for them.
            self.words.add(word for chunk in chunks for word in content_words(chunk.text))
        rows = list(
            zip(
                [chunk_id(chunk.article_id, chunk.version, chunk.index) for chunk in chunks],
                vectors.tolist(),
                [chunk.text for chunk in chunks],
                [chunk_metadata(chunk) for chunk in chunks],
                strict=True,
            )
        )
        self._upsert_chunks(rows)
        now = datetime.now(UTC)
        records = [
            (article.id, article.text, article_metadata(article, text_hash, len(article_chunks), now))
            for article, text_hash, article_chunks in items
        ]
        for batch in self._batches(records):
            ids_b, docs_b, metas_b = zip(*batch, strict=True)
            self._articles.upsert(
                ids=list(ids_b), embeddings=[[1.0]] * len(ids_b), documents=list(docs_b), metadatas=list(metas_b)
            )
        expected = {article.id: (article.version, len(article_chunks)) for article, _, article_chunks in items}
        missing = self._missing_chunks(expected)
        if missing:  # deleted by another process between our chunk and record writes: write them again
            self._upsert_chunks([row for row in rows if row[0].split("#", 1)[0] in missing])
            missing = self._missing_chunks({article_id: expected[article_id] for article_id in missing})
        failed = sorted(missing)
        if failed:
            self._articles.delete(ids=failed)
        # Bump before deleting: a reader still on the old generation keeps finding the old chunks.
        self._bump([article.id for article, _, _ in items])
        for article, _, _ in items:
            if article.id in replacing and article.id not in missing:
                self._chunks.delete(where={"$and": [{"article_id": article.id}, {"version": {"$ne": article.version}}]})
        self._meta.delete(ids=[intent])
        return failed

    def _upsert_chunks(self, rows: Sequence[tuple[str, list[float], str, dict[str, Any]]]) -> None:
        """Write chunk rows (id, vector, text, metadata), each stamped with the time it was written."""
        for batch in self._batches(rows):
            ids_b, vectors_b, docs_b, metas_b = zip(*batch, strict=True)
            written_at = time.time()
            self._chunks.upsert(
                ids=list(ids_b),
                embeddings=list(vectors_b),
                documents=list(docs_b),
                metadatas=[{**meta, "written_at": written_at} for meta in metas_b],
            )

    def _missing_chunks(self, expected: dict[str, tuple[str, int]]) -> set[str]:
        """The ids among `expected` (article id -> (version, chunk count)) with fewer chunks of that version stored."""
        counts: Counter[str] = Counter()
        ids = sorted(expected)
        for batch in self._batches(ids):
            got = _get_all(self._chunks, ["metadatas"], where={"article_id": {"$in": list(batch)}})
            for meta in got["metadatas"]:
                article_id = str(meta.get("article_id", ""))
                if article_id in expected and meta.get("version") == expected[article_id][0]:
                    counts[article_id] += 1
        return {article_id for article_id, (_, count) in expected.items() if counts[article_id] < count}

    def incomplete(self) -> set[str]:
        """Ids of stored articles some of whose current chunks are missing (an ingest writes them again)."""
        records = _get_all(self._articles, ["metadatas"])
        return set(_incomplete_articles(records, _get_all(self._chunks, ["metadatas"])))

    def remove(self, article_id: str) -> int:
        """Delete an article and all its chunks; returns how many chunks went."""
        article_id = clean_untrusted(article_id)
        if not self._articles.get(ids=[article_id], include=[])["ids"]:
            raise NotFoundError(f"no article with id {article_id!r}: see dossier list")
        count = len(self._chunks.get(where={"article_id": article_id}, include=[])["ids"])
        intent = self._intend([article_id])
        self._articles.delete(ids=[article_id])
        self._bump([article_id])
        self._chunks.delete(where={"article_id": article_id})
        self._meta.delete(ids=[intent])
        return count

    def sweep(self, everything: bool = False) -> Swept:
        """Delete chunks that no article record makes current and no write in progress can still commit.

        Such a chunk goes when it is older than `sweep_grace` seconds (chunks written before `written_at`
        existed count as old), or older than its article's current record (an interrupted update's old
        version). Younger ones may be another process's write between its chunks and its record. Each delete
        repeats the age condition, so a chunk rewritten since it was read here survives.

        Only the articles that intents name are read (see `_intend`): a write or removal in progress, or one
        that was interrupted. An intent older than the grace whose articles are clean afterwards is deleted.
        The whole store is read when `everything` is asked (`dossier compact`), and until one such read finds
        every article complete (a store written by a version that recorded no intents may hold leftovers, or
        articles whose chunks went missing, that no intent names).

        Returns how many chunks were found stale, and (from the same read) which articles' current chunks are
        incomplete.
        """
        intents = _get_all(self._meta, ["metadatas"], where={"kind": "intent"})
        whole = everything or not self._meta.get(ids=[_SWEEP_ID], include=[])["ids"]
        if whole:
            records = _get_all(self._articles, ["metadatas"])
            got = _get_all(self._chunks, ["metadatas"])
        else:
            named = set().union(*(_intent_articles(meta) for meta in intents["metadatas"]))
            records, got = self._articles_and_chunks(sorted(named))
        current = {
            article_id: (meta.get("version"), _written_at(meta))
            for article_id, meta in zip(records["ids"], records["metadatas"], strict=True)
        }
        incomplete = _incomplete_articles(records, got)
        grace_cutoff = time.time() - self.sweep_grace
        stale, spared = _leftovers(got, current, grace_cutoff)
        for cutoff, ids in stale.items():
            where = None if cutoff is None else {"written_at": {"$lt": cutoff}}
            for batch in self._batches(ids):
                self._chunks.delete(ids=list(batch), where=where)
        count = sum(len(ids) for ids in stale.values())
        if count:
            self._bump()
        done = [
            intent
            for intent, meta in zip(intents["ids"], intents["metadatas"], strict=True)
            if (_written_at(meta) or 0.0) < grace_cutoff and not _intent_articles(meta) & spared
        ]
        if done:
            self._meta.delete(ids=done)
        if whole and not incomplete:  # until incomplete articles are written again, sweeps read the whole store
            self._meta.upsert(ids=[_SWEEP_ID], embeddings=[[1.0]], metadatas=[{"kind": "sweep", "at": time.time()}])
        return Swept(count, incomplete)

    def _articles_and_chunks(self, article_ids: Sequence[str]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """The records (ids, metadatas) of `article_ids` that exist, and every chunk of theirs, any version."""
        records: dict[str, list[Any]] = {"ids": [], "metadatas": []}
        chunks: dict[str, list[Any]] = {"ids": [], "metadatas": []}
        for batch in self._batches(article_ids):
            got = self._articles.get(ids=list(batch), include=["metadatas"])
            records["ids"] += got["ids"]
            records["metadatas"] += got["metadatas"]
            found = _get_all(self._chunks, ["metadatas"], where={"article_id": {"$in": list(batch)}})
            chunks["ids"] += found["ids"]
            chunks["metadatas"] += found["metadatas"]
        return records, chunks

    # -- reading -------------------------------------------------------------------------------

    def article_count(self) -> int:
        return int(self._articles.count())

    def chunk_count(self) -> int:
        """Every chunk Chroma holds, leftovers of an interrupted write included (`dossier stats` counts only the
        current ones, from the article records: see `assistant.library.Library.stats`)."""
        return int(self._chunks.count())

    def list_articles(self) -> list[ArticleRecord]:
        got = _get_all(self._articles, ["metadatas"])
        records = [
            article_record(article_id, meta) for article_id, meta in zip(got["ids"], got["metadatas"], strict=True)
        ]
        return sorted(records, key=lambda record: (record.published, record.title), reverse=True)

    def get_article(self, article_id: str) -> ArticleRecord:
        article_id = clean_untrusted(article_id)  # an id typed by someone: no lone surrogate reaches Chroma
        got = self._articles.get(ids=[article_id], include=["metadatas", "documents"])
        if not got["ids"]:
            raise NotFoundError(f"no article with id {article_id!r}: see dossier list")
        return article_record(article_id, got["metadatas"][0], got["documents"][0] or "")

    def current_chunks(self) -> list[StoredChunk]:
        """Every chunk that belongs to its article's current version, in article and index order."""
        chunks = [chunk for page in self.current_chunk_pages() for chunk in page]
        return sorted(chunks, key=lambda chunk: (chunk.passage.article_id, chunk.passage.start))

    def current_chunk_pages(self, page: int = 5000) -> Iterator[list[StoredChunk]]:
        """`current_chunks` a page at a time, in the store's order: for a reader that should not hold every text of a
        large store at once (the lexical index's rebuild)."""
        current = {article_id: version for article_id, (version, _) in self.versions().items()}
        for got in _pages(self._chunks, ["metadatas", "documents"], page):
            yield [
                StoredChunk(cid, passage_of(cid, doc, meta))
                for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
                if current.get(str(meta.get("article_id"))) == meta.get("version")
            ]

    def article_chunks(self, article_ids: Collection[str]) -> list[StoredChunk]:
        """The current chunks of some articles (none for an article no longer stored), in article and index order."""
        ids = sorted(set(article_ids))
        current: dict[str, Any] = {}
        for batch in self._batches(ids):
            got = self._articles.get(ids=list(batch), include=["metadatas"])
            current.update({aid: meta.get("version") for aid, meta in zip(got["ids"], got["metadatas"], strict=True)})
        chunks: list[StoredChunk] = []
        for batch in self._batches(sorted(current)):
            got = _get_all(self._chunks, ["metadatas", "documents"], where={"article_id": {"$in": list(batch)}})
            chunks.extend(
                StoredChunk(cid, passage_of(cid, doc, meta))
                for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
                if current.get(str(meta.get("article_id"))) == meta.get("version")
            )
        return sorted(chunks, key=lambda chunk: (chunk.passage.article_id, chunk.passage.start))

    def passages(self, chunk_ids: Sequence[str]) -> list[Passage | None]:
        """The passages of some chunks, in the order asked (None for one no longer stored)."""
        found: dict[str, Passage] = {}
        for batch in self._batches(list(dict.fromkeys(chunk_ids))):
            got = self._chunks.get(ids=list(batch), include=["metadatas", "documents"])
            found.update(
                (cid, passage_of(cid, doc, meta))
                for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            )
        return [found.get(cid) for cid in chunk_ids]

    def search(
        self, vector: np.ndarray, k: int, filters: Filters | None = None, as_of: date | None = None
    ) -> list[Passage]:
        """The k current chunks nearest to `vector` (cosine) that pass `filters` and were published by `as_of`,
        best first, with `score = 1 - distance`.

        Chunks left by an interrupted write (not their article's current version) are skipped, so a few
        more than k are asked for.
        """
        self._fresh_vectors()
        where = chroma_where(filters or Filters(), as_of)
        total = self.chunk_count()
        current = self._current_versions()
        wanted = min(total, k + 8)
        while wanted > 0:
            got = self._chunks.query(
                query_embeddings=[vector.tolist()],
                n_results=wanted,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
            rows = list(zip(got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0], strict=True))
            passages = [
                passage_of(cid, doc, meta, 1.0 - float(distance))
                for cid, doc, meta, distance in rows
                if meta is not None and current.get(str(meta.get("article_id"))) == meta.get("version")
            ]
            if len(passages) >= k or len(rows) < wanted or wanted >= total:
                return passages[:k]
            wanted = min(total, wanted * 4)
        return []

    def nearest(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the `n` chunks nearest to `vector`, unfiltered, best first.

        Cheaper than `search`: no documents or metadata are read, and the chunk count is not checked
        (Chroma returns fewer than `n` when it holds fewer). The ids may include chunks of an article's
        old version (left by an interrupted write); callers check them against current ones.
        """
        if n <= 0:
            return []
        self._fresh_vectors()
        got = self._chunks.query(query_embeddings=[vector.tolist()], n_results=n, include=["distances"])
        return [(cid, 1.0 - float(distance)) for cid, distance in zip(got["ids"][0], got["distances"][0], strict=True)]

    def _current_versions(self) -> dict[str, str]:
        """article id -> current version, reloaded only when the generation changed."""
        generation = self.generation()
        if self._current[0] != generation:
            self._current = (generation, {article_id: version for article_id, (version, _) in self.versions().items()})
        return self._current[1]

    def close(self) -> None:
        """Let go of the Chroma client; a new `Store` then reads the store afresh (e.g. after another process wrote)."""
        for client in (self._retired, self._client):
            close = getattr(client, "close", None)
            if close is not None:
                close()
        self._retired = None


def _get_all(
    collection: Any, include: list[str], page: int = 5000, where: dict[str, Any] | None = None
) -> dict[str, list[Any]]:
    """Every record of a collection (matching `where`), fetched in pages: one `get()` of 100k records overflows
    SQLite's variables."""
    merged: dict[str, list[Any]] = {"ids": [], **{key: [] for key in include}}
    for got in _pages(collection, include, page, where):
        for key in merged:
            merged[key].extend(got[key] or [])
    return merged


def _pages(
    collection: Any, include: list[str], page: int = 5000, where: dict[str, Any] | None = None
) -> Iterator[dict[str, list[Any]]]:
    """The records of a collection (matching `where`), `page` at a time."""
    offset = 0
    while True:
        got = collection.get(include=include, limit=page, offset=offset, where=where)
        yield got
        if len(got["ids"]) < page:
            return
        offset += page


def _storable(meta: ChromaMetadata) -> ChromaMetadata:
    """Metadata Chroma can store: a file name's bytes that are not UTF-8 (in `path`, or a title taken from it)
    would make it refuse the whole batch, so such text goes through `clean_untrusted`."""
    return {key: clean_untrusted(value) if isinstance(value, str) else value for key, value in meta.items()}


def _incomplete_articles(records: dict[str, list[Any]], chunks: dict[str, list[Any]]) -> frozenset[str]:
    """Ids of `records` (article ids and metadatas) with fewer chunks of their version among `chunks` than they count."""
    expected = {
        article_id: (meta.get("version"), int(meta.get("chunks", 0)))
        for article_id, meta in zip(records["ids"], records["metadatas"], strict=True)
    }
    found = Counter(
        str(meta.get("article_id"))
        for meta in chunks["metadatas"]
        if expected.get(str(meta.get("article_id")), (None, 0))[0] == meta.get("version")
    )
    return frozenset(article_id for article_id, (_, count) in expected.items() if found[article_id] < count)


def _leftovers(
    chunks: dict[str, list[Any]], current: dict[str, tuple[Any, float | None]], grace_cutoff: float
) -> tuple[dict[float | None, list[str]], set[str]]:
    """Which of `chunks` (ids, metadatas) no record in `current` (article id -> version, written at) makes current.

    Returns the ones to delete, grouped by the time they must have been written before (None: always, for chunks
    older than write times), and the articles with a leftover too young to delete (a write may be committing it).
    """
    stale: defaultdict[float | None, list[str]] = defaultdict(list)
    spared: set[str] = set()
    for cid, meta in zip(chunks["ids"], chunks["metadatas"], strict=True):
        version, record_written = current.get(str(meta.get("article_id")), (None, None))
        if version is not None and version == meta.get("version"):
            continue
        written = _written_at(meta)
        if written is None:
            stale[None].append(cid)
        elif written < grace_cutoff:
            stale[grace_cutoff].append(cid)
        elif record_written is not None and written < record_written:
            stale[record_written].append(cid)
        else:
            spared.add(str(meta.get("article_id")))
    return stale, spared


def _intent_articles(meta: dict[str, Any]) -> set[str]:
    """The article ids an intent record names (none when the record is damaged)."""
    try:
        named = json.loads(str(meta.get("articles", "[]")))
    except ValueError:
        return set()
    return {str(article_id) for article_id in named} if isinstance(named, list) else set()


def _written_at(meta: dict[str, Any]) -> float | None:
    """When a chunk or record was written (epoch seconds), or None for one stored before this was recorded."""
    value = meta.get("written_at")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# -- the store's schema: typed records <-> Chroma metadata, each way in one function -------------------


def chunk_metadata(chunk: Chunk) -> ChromaMetadata:
    """What the store keeps beside a chunk: its fields and its article's, as values Chroma stores (no None: `page`
    only when known; `published_day` for date filters, see `chroma_where`). `passage_of` reads it back.

    >>> article = Article(id="bridge", title="Bridge opens", text="The bridge opened.", published="2024-06-01")
    >>> meta = chunk_metadata(Chunk(article, 0, article.text, 0, 18, article.text))
    >>> meta["article_id"], meta["published_day"], meta["kind"], "page" in meta
    ('bridge', 739038, 'body', False)
    """
    article = chunk.article
    metadata: ChromaMetadata = {
        "article_id": article.id,
        "chunk_index": chunk.index,
        "start": chunk.start,
        "end": chunk.end,
        "kind": chunk.kind,
        "title": article.title,
        "source": article.source,
        "published": article.published,
        "published_day": published_ordinal(article.published),
        "url": article.url,
        "path": article.path,
        "author": article.author,
        "version": article.version,
    }
    if chunk.page is not None:
        metadata["page"] = chunk.page
    return _storable(metadata)


def passage_of(chunk_id: str, document: str | None, meta: dict[str, Any], score: float = 0.0) -> Passage:
    """The `Passage` of one chunk row as Chroma returns it (id, document, metadata), the reverse of `chunk_metadata`:
    every read of chunks (`search`, `passages`, `current_chunks`, `article_chunks`) goes through here."""
    page = meta.get("page")
    return Passage(
        chunk_id=chunk_id,
        article_id=str(meta.get("article_id", "")),
        text=document or "",
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        published=str(meta.get("published", "")),
        url=str(meta.get("url", "")),
        path=str(meta.get("path", "")),
        page=int(page) if page is not None else None,
        kind=str(meta.get("kind", "body")),
        score=score,
    )


def article_metadata(article: Article, text_hash: str, chunks: int, now: datetime) -> ChromaMetadata:
    """What the store keeps in an article's record beside its text; `article_record` reads it back."""
    return _storable(
        {
            "title": article.title,
            "source": article.source,
            "url": article.url,
            "published": article.published,
            "published_day": published_ordinal(article.published),
            "author": article.author,
            "path": article.path,
            "version": article.version,
            "text_hash": text_hash,
            "chunks": chunks,
            "ingested_at": now.isoformat(timespec="seconds"),
            "written_at": now.timestamp(),
            "removed": json.dumps(list(article.removed)),
            "captions": json.dumps(list(article.captions)),
            "notes": json.dumps(list(article.notes)),
        }
    )


def article_record(article_id: str, meta: dict[str, Any], text: str = "") -> ArticleRecord:
    """The `ArticleRecord` of one article row as Chroma returns it, the reverse of `article_metadata`."""
    return ArticleRecord(
        id=article_id,
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        url=str(meta.get("url", "")),
        published=str(meta.get("published", "")),
        author=str(meta.get("author", "")),
        path=str(meta.get("path", "")),
        version=str(meta.get("version", "")),
        text_hash=str(meta.get("text_hash", "")),
        chunks=int(meta.get("chunks", 0)),
        ingested_at=str(meta.get("ingested_at", "")),
        text=text,
        removed=tuple(json.loads(str(meta.get("removed", "[]")))),
        captions=tuple(json.loads(str(meta.get("captions", "[]")))),
        notes=tuple(json.loads(str(meta.get("notes", "[]")))),
    )


def chroma_where(filters: Filters, as_of: date | None) -> dict[str, Any] | None:
    """The Chroma `where` clause for `filters` and the as-of date, on the chunks' metadata (None: no condition).

    An `until` bound also leaves out undated articles (`published_day` 0), as the lexical index's mask does.

    >>> chroma_where(Filters(sources=("Harbor Daily",)), None)
    {'source': {'$in': ['Harbor Daily']}}
    >>> chroma_where(Filters(), date(2024, 6, 1))
    {'published_day': {'$lte': 739038}}
    >>> chroma_where(Filters(), None) is None
    True
    """
    clauses: list[dict[str, Any]] = []
    if filters.sources:
        clauses.append({"source": {"$in": list(filters.sources)}})
    if filters.article_ids:
        clauses.append({"article_id": {"$in": list(filters.article_ids)}})
    if filters.since:
        clauses.append({"published_day": {"$gte": filters.since.toordinal()}})
    if filters.until:
        clauses.append({"published_day": {"$lte": filters.until.toordinal()}})
        clauses.append({"published_day": {"$gt": 0}})
    if as_of:
        clauses.append({"published_day": {"$lte": as_of.toordinal()}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
