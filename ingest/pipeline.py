"""Incremental ingest: read files, skip what is unchanged or duplicated, chunk, embed and store the rest."""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ingest.chunking import chunk_article
from ingest.loaders import iter_files, load_file
from ingest.models import Article, ArticleFields, Chunk, Skipped, Swept
from ingest.pdf_worker import PdfLimits

# The namespace of uploaded articles (`upload/<stored file>[/<record>]`), kept apart from every other id.
UPLOAD_NAMESPACE = "upload"
# Namespaces only an ingest into them may write. A plain ingest (the CLI) is refused ids inside them, so an upload
# never finds, and updates, an article that it did not create.
RESERVED_NAMESPACES = frozenset({UPLOAD_NAMESPACE})
_NAMESPACE = re.compile(r"[\w-]+")
# Why an article was not stored although it was written: its chunks vanished and stayed missing after a rewrite.
_LOST_CHUNKS = (
    "its chunks were deleted by another process while being stored, and again when written a second time; "
    "the article was not stored: run the ingest again"
)
# Most chunks one article may have (Settings.max_chunks_per_article): a file far past it (one 2 MB line after a title)
# is rarely one article, and would take minutes to embed.
MAX_CHUNKS_PER_ARTICLE = 500
# Articles checked against the store at once (their records looked up by id and text hash).
CHECK_ARTICLES = 256


class ChunkStore(Protocol):
    """What the pipeline needs of a store (implemented by `assistant.store.Store`)."""

    def versions(self, article_ids: Collection[str] | None = None) -> dict[str, tuple[str, str]]: ...

    def text_owners(self, text_hashes: Collection[str]) -> dict[str, set[str]]: ...

    def write(
        self, items: Sequence[tuple[Article, str, list[Chunk]]], replacing: Collection[str] = ()
    ) -> list[str]: ...

    def sweep(self) -> Swept: ...


@dataclass
class IngestReport:
    """What one ingest run did; `to_json()` is the `dossier ingest --json` object."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path or id, id of the stored copy)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, what the loader repaired)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def stored(self) -> int:
        return len(self.added) + len(self.updated)

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary of issue 2's `--json` contract; duplicates' owners and loader notes are in the lists above."""
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "duplicates": len(self.duplicates),
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "skipped": [{"path": item.path, "reason": item.reason} for item in self.skipped],
        }


def ingest_paths(
    paths: Iterable[str | Path],
    store: ChunkStore,
    *,
    chunk_size: int = 900,
    chunk_overlap: int = 0,
    max_bytes: int = 20 * 1024 * 1024,
    batch_chunks: int = 512,
    progress: bool = False,
    namespace: str | None = None,
    max_chunks: int = MAX_CHUNKS_PER_ARTICLE,
    pdf_limits: PdfLimits = PdfLimits(),  # noqa: B008 (a frozen value)
    fields: ArticleFields | None = None,
) -> IngestReport:
    """Bring the store up to date with the articles under `paths`.

    With `namespace` (uploads: `UPLOAD_NAMESPACE`) every article gets an id inside it, whatever id its
    file asks for (see `ingest.loaders.FileIds`), so it can only add or update articles of that namespace.
    Without one, ids inside a reserved namespace are refused. `fields` (an upload's title, outlet, date, URL)
    replace those the files give, in every article read from `paths`.

    An article that makes more than `max_chunks` chunks is skipped, with a message naming the setting; so is a
    PDF that takes longer or more memory to read than `pdf_limits` allow (each is read in a child process).

    Unchanged articles (same content hash) cost a read and a hash; changed ones are re-chunked and
    replace their old chunks; a text already stored under another id is reported, not stored twice.
    Articles are embedded and written in groups of about `batch_chunks` chunks, so an interrupted
    run keeps every group it finished.

    >>> report = ingest_paths(["examples/articles"], store)   # doctest: +SKIP
    >>> report.to_json()["added"]                               # doctest: +SKIP
    10
    """
    if namespace is not None and not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r}: use letters, digits, '-' and '_' only")
    started = time.perf_counter()
    run = _Run(store, _progress_bar(progress), batch_chunks, (chunk_size, chunk_overlap, max_chunks))
    for item in iter_files(paths):
        if isinstance(item, Skipped):
            run.report.skipped.append(item)
            continue
        title = fields.title if fields else ""
        result = load_file(item[0], max_bytes, root=item[1], namespace=namespace, pdf_limits=pdf_limits, title=title)
        run.report.skipped.extend(result.skipped)
        for article in result.articles:
            article = fields.apply(article) if fields else article
            refusal = _id_refusal(article.id, namespace)
            if refusal:
                run.report.skipped.append(Skipped(article.path, refusal))
                continue
            run.report.notes.extend((article.path, note) for note in article.notes)
            run.take(article)
    run.check()
    run.flush()
    run.bar.close()
    run.report.seconds = time.perf_counter() - started
    return run.report


class _Run:
    """One `ingest_paths` call: what the store held at its start, what the run has seen, and the batch it builds.

    Articles are checked against the store `CHECK_ARTICLES` at a time, by their ids and text hashes, so a run
    reads the records of the articles it brings, not every record of a large store.
    """

    def __init__(self, store: ChunkStore, bar: Any, batch_chunks: int, chunking: tuple[int, int, int]) -> None:
        self.store = store
        self.bar = bar
        self.batch_chunks = batch_chunks
        self.chunking = chunking  # chunk size, overlap, most chunks per article
        self.report = IngestReport()
        # Articles whose record promises chunks that are gone (lost to a clean-up before writes were verified) are
        # treated as changed, so this run writes them again instead of calling them unchanged.
        self.incomplete = store.sweep().incomplete
        self.stored: dict[str, tuple[str, str]] = {}  # of the articles checked so far: id -> (version, text hash)
        self.owners: dict[str, set[str]] = {}  # text hash -> stored articles with it, for those checked so far
        self.claimed: dict[str, str] = {}  # text hash -> the article of this run that writes it
        self.seen_ids: dict[str, str] = {}
        self.unchecked: list[Article] = []
        self.pending: list[tuple[Article, str, list[Chunk]]] = []
        self.pending_chunks = 0

    def take(self, article: Article) -> None:
        """Queue `article` to be checked against the store, unless its id is taken in this run."""
        if article.id in self.seen_ids:
            taken = f"id {article.id!r} already used by {self.seen_ids[article.id]} in this run; give it another id"
            self.report.skipped.append(Skipped(article.path, taken))
            return
        self.seen_ids[article.id] = article.path
        self.unchecked.append(article)
        if len(self.unchecked) >= CHECK_ARTICLES:
            self.check()

    def check(self) -> None:
        """Look the queued articles up in the store, then decide each in the order it came."""
        articles, self.unchecked = self.unchecked, []
        if not articles:
            return
        self.stored.update(self.store.versions([article.id for article in articles]))
        self.owners.update(self.store.text_owners({article.text_hash for article in articles}))
        for article in articles:
            self.decide(article)

    def decide(self, article: Article) -> None:
        """Queue `article` for writing, unless it is unchanged, a duplicate or too long."""
        report = self.report
        version, body_hash = article.version, article.text_hash
        stored = self.stored.get(article.id)
        if stored is not None and stored[0] == version and article.id not in self.incomplete:
            report.unchanged.append(article.id)
            return
        others = self.owners.get(body_hash, set()) - {article.id}
        owner = self.claimed.get(body_hash) or (min(others) if others else None)
        if owner is not None and owner != article.id:
            report.duplicates.append((article.path or article.id, owner))
            return
        chunk_size, chunk_overlap, max_chunks = self.chunking
        chunks = chunk_article(article, chunk_size, chunk_overlap)
        if len(chunks) > max_chunks:
            too_long = (
                f"article too long: {len(chunks):,} chunks, over the limit of {max_chunks:,} per article "
                f"(max_chunks_per_article); split the file into articles or raise the setting"
            )
            report.skipped.append(Skipped(article.path, too_long))
            return
        self.claimed[body_hash] = article.id
        (report.updated if stored is not None else report.added).append(article.id)
        report.chunks += len(chunks)
        self.pending.append((article, body_hash, chunks))
        self.pending_chunks += len(chunks)
        if self.pending_chunks >= self.batch_chunks:
            self.flush()

    def flush(self) -> None:
        """Write the queued articles; any whose chunks did not all arrive is reported as skipped."""
        if not self.pending:
            return
        replacing = [article.id for article, _, _ in self.pending if article.id in self.stored]
        failed = set(self.store.write(self.pending, replacing=replacing))
        for article, _, chunks in self.pending:
            if article.id in failed:
                (self.report.updated if article.id in self.stored else self.report.added).remove(article.id)
                self.report.chunks -= len(chunks)
                self.report.skipped.append(Skipped(article.path or article.id, _LOST_CHUNKS))
        self.bar.update(self.pending_chunks)
        self.pending, self.pending_chunks = [], 0


def _id_refusal(article_id: str, namespace: str | None) -> str:
    """Why an ingest into `namespace` (None: a plain one) may not write `article_id`, or "" when it may."""
    first, slash, _ = article_id.partition("/")
    if namespace is not None:
        return "" if first == namespace and slash else f"id {article_id!r} is outside {namespace}/"
    if slash and first in RESERVED_NAMESPACES:
        return (
            f"id {article_id!r} is inside {first}/, which is kept for uploaded files: "
            "give the article another id (front matter id:, or a JSON id) or ingest it from a folder with another name"
        )
    return ""


class _NoBar:
    def update(self, count: int) -> None: ...

    def close(self) -> None: ...


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(unit="chunk", desc="embedding", leave=False)
