"""The article library, one facade for every door (command line, chat, HTTP API): ingest, list, show, upload, remove, stats.

`StoredArticles` does the work on a `Store`; `Library` is what the doors call, and adds their rules.

Uploaded file names are untrusted: they never become paths. A file is kept in `upload_dir` under a
name the server builds from the letters, digits, `-` and `_` of the original stem, a short hash of the
exact original name and the checked suffix (`../../etc/passwd.txt` becomes `passwd-<hash>.txt`): two
different names never share a file, and re-uploading a file under the same name updates its article.
Uploaded articles get ids of their own, `upload/<stored name>` (`/<record>` for JSON), whatever id the
file asks for: an upload never replaces an article it did not create. Writes are serialized by one
lock; reads and questions go on meanwhile.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, TYPE_CHECKING, Any, Protocol

from assistant.errors import ReadOnlyError, UnsupportedFileError, UploadError, UploadTooLargeError
from assistant.models import ArticleRecord
from assistant.settings import Settings
from assistant.text import clean_untrusted
from ingest.loaders import SUPPORTED_SUFFIXES, checked_url
from ingest.models import ArticleFields
from ingest.pipeline import UPLOAD_NAMESPACE, IngestReport, ingest_paths

if TYPE_CHECKING:
    from assistant.store import Store

ALLOWED_SUFFIXES = frozenset(SUPPORTED_SUFFIXES)
NO_DATE_NOTE = (
    "{id} has no date, so questions about a time ('this week') and date filters cannot find it: "
    "add a line 'date: YYYY-MM-DD' at the top of the file (or a 'published' field), or give the chat's upload "
    "form a date, and upload it again"
)
# Hex digits of SHA-256(original name) in a stored file's name: 64 bits, so distinct names never share a file, by
# chance or by a name searched for to land on someone else's.
NAME_HASH_DIGITS = 16
MAX_SLUG_CHARS = 80
MAX_SLUG_BYTES = 160  # file systems allow 255 bytes per name; letters outside ASCII take up to 4
Progress = Callable[[int, int, str], None]
MAX_FIELD_CHARS = 500  # an upload form's title or outlet; a longer one is a paste gone wrong


class Ingester(Protocol):
    """What ingests for `StoredArticles` elsewhere (`assistant.ingest_worker.IngestWorker`)."""

    def ingest(
        self, paths: list[Path], namespace: str | None = None, fields: ArticleFields | None = None
    ) -> IngestReport: ...


class StoredArticles:
    """The articles of one `Store`, ingested the way `settings` say: the one place that turns `Settings` into
    `ingest_paths` arguments.

    >>> articles = StoredArticles(Store.from_settings(settings), settings)     # doctest: +SKIP
    >>> articles.ingest(["examples/articles"]).to_json()["added"]               # doctest: +SKIP
    10
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.location = store.location
        # A server's uploads are ingested in a child process (`assistant.ingest_worker`); None: in this one.
        self.worker: Ingester | None = None

    def ingest(
        self,
        paths: Iterable[str | Path],
        progress: bool = False,
        namespace: str | None = None,
        fields: ArticleFields | None = None,
    ) -> IngestReport:
        """Bring the store up to date with the files under `paths` (see `ingest.pipeline.ingest_paths`).

        `namespace` keeps every id inside it (uploads use `UPLOAD_NAMESPACE`); None keeps the ids files ask for.
        `fields` replace the title, outlet, date or URL the files give (an upload's form).
        """
        if self.worker is not None and not progress:
            return self.worker.ingest([Path(path) for path in paths], namespace, fields)
        s = self.settings
        return ingest_paths(
            paths,
            self.store,
            chunk_size=s.chunk_size,
            chunk_overlap=s.chunk_overlap,
            max_chunks=s.max_chunks_per_article,
            max_bytes=int(s.max_file_mb * 1024 * 1024),
            pdf_limits=s.pdf_limits,
            progress=progress,
            namespace=namespace,
            fields=fields,
        )

    def articles(self) -> list[ArticleRecord]:
        return self.store.list_articles()

    def article(self, article_id: str) -> ArticleRecord:
        return self.store.get_article(article_id)

    def remove(self, article_id: str) -> int:
        return self.store.remove(article_id)


@dataclass(frozen=True)
class LibraryStats:
    """Counts of a library, as `dossier stats` prints them (chunks: those answers can come from)."""

    store: str
    articles: int
    chunks: int
    sources: list[str]
    earliest: str
    latest: str
    embedding_model: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave (metadata only), and its bytes as an open file or a local path."""

    name: str
    size: int
    content: IO[bytes] | Path


@dataclass(frozen=True)
class UploadResult:
    """What became of one uploaded file: added, updated, unchanged, duplicate or skipped (with the reason).

    `notes` says what the server changed while reading it, e.g. an id the file asked for and the one it got.
    `stored_as` is the file's name in the upload folder (never its path: results go back to clients), which
    its article ids are made from.
    """

    name: str
    status: str
    articles: tuple[str, ...] = ()
    reason: str = ""
    stored_as: str = ""
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["articles"] = list(self.articles)
        data["notes"] = list(self.notes)
        return data


def safe_name(name: str) -> str:
    """The server's file name for an upload: the stem's letters and digits, a hash of `name`, the lower-cased suffix.

    The hash is of the exact name the client sent, so `x.TXT` and `x.txt`, or `report (1).txt` and
    `report-1.txt`, are kept apart, while the same name always maps to the same file.

    >>> safe_name("../../etc/passwd.txt"), safe_name("東京.txt")
    ('passwd-5f510902fe3d29d9.txt', '東京-81ab2034dad28054.txt')
    """
    last = PureWindowsPath(PurePosixPath(name).name).name
    suffix = PurePosixPath(last).suffix.lower()
    stem = last[: -len(suffix)] if suffix else last
    slug = re.sub(r"[^\w-]+", "-", unicodedata.normalize("NFC", stem)).strip("-_")[:MAX_SLUG_CHARS]
    while len(slug.encode()) > MAX_SLUG_BYTES:
        slug = slug[:-1]
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:NAME_HASH_DIGITS]
    return f"{slug.rstrip('-_') or 'upload'}-{digest}{suffix}"


def check_upload(name: str, size: int, max_bytes: int) -> str:
    """The file's suffix when it is on the allow-list and within the size limit; raises `UploadError` otherwise."""
    suffix = PurePosixPath(PureWindowsPath(name).name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise UnsupportedFileError(
            f"{name!r}: file type {suffix or '(none)'} is not accepted; use one of {', '.join(sorted(ALLOWED_SUFFIXES))}"
        )
    if size > max_bytes:
        raise UploadTooLargeError(
            f"{name!r} is {size / 1e6:.2f} MB, over the {max_bytes / 1e6:.2f} MB upload limit (max_upload_mb)"
        )
    return suffix


def upload_fields(title: str = "", outlet: str = "", published: str = "", url: str = "") -> ArticleFields:
    """An upload form's optional title, outlet, date and URL, checked; `UploadError` names the field that is wrong.

    >>> upload_fields(title=" Harbour seals ", published="2024-07-02").title
    'Harbour seals'
    >>> upload_fields(published="2 July")
    Traceback (most recent call last):
    assistant.errors.UploadError: date '2 July' is not a date as YYYY-MM-DD, e.g. 2024-07-02
    """
    title, outlet, published, url = (
        " ".join(clean_untrusted(v or "").split()) for v in (title, outlet, published, url)
    )
    for name, value in (("title", title), ("outlet", outlet)):
        if len(value) > MAX_FIELD_CHARS:
            raise UploadError(f"{name} is {len(value):,} characters long; at most {MAX_FIELD_CHARS} are kept")
    if published:
        try:
            published = date.fromisoformat(published).isoformat()
        except ValueError:
            raise UploadError(f"date {published!r} is not a date as YYYY-MM-DD, e.g. 2024-07-02") from None
    if url and not checked_url(url)[0]:
        raise UploadError(f"url {url!r} is not a web address: give one starting with http:// or https://")
    return ArticleFields(title=title, source=outlet, published=published, url=url)


class Library:
    """The articles of one store (`StoredArticles`, e.g. an `Assistant`'s `stored`), with uploads and removals
    (refused when `settings.read_only`): what the doors call.

    >>> library = Library(assistant.stored, settings)                                         # doctest: +SKIP
    >>> [r.status for r in library.add([Upload("notes.txt", 120, Path("/tmp/notes.txt"))])]  # doctest: +SKIP
    ['added']
    """

    def __init__(self, stored: StoredArticles, settings: Settings) -> None:
        self.stored = stored
        self.read_only = settings.read_only
        self.folder = Path(settings.upload_dir).resolve()
        self.max_bytes = int(settings.max_upload_mb * 1024 * 1024)
        self.max_files = settings.max_upload_files
        self.embedding_model = settings.embedding_model
        self._lock = threading.Lock()

    def articles(self) -> list[ArticleRecord]:
        """The stored articles, newest first."""
        return self.stored.articles()

    def article(self, article_id: str) -> ArticleRecord:
        """One article, its text included; `NotFoundError` when no article has that id."""
        return self.stored.article(article_id)

    def sources(self) -> list[str]:
        """The outlets of the stored articles, sorted."""
        return _outlets(self.articles())

    def stats(self) -> LibraryStats:
        """Counts of articles, current chunks and outlets, and the span of publication dates."""
        records = self.articles()
        dates = sorted(record.published for record in records if record.published)
        return LibraryStats(
            store=self.stored.location,
            articles=len(records),
            chunks=sum(record.chunks for record in records),
            sources=_outlets(records),
            earliest=dates[0] if dates else "",
            latest=dates[-1] if dates else "",
            embedding_model=self.embedding_model,
        )

    def ingest(self, paths: Iterable[str | Path], progress: bool = False) -> IngestReport:
        """Add or update the articles under `paths` (files or folders), with the ids their files ask for."""
        self.check_writable()
        with self._lock:
            return self.stored.ingest(paths, progress=progress)

    def check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError("this Dossier is read-only: uploads and removals are disabled (read_only)")

    def check(self, uploads: Sequence[Upload]) -> None:
        """Refuse the whole batch when one file breaks a rule, before anything is written."""
        self.check_writable()
        if not uploads:
            raise UploadError("no files in the upload")
        if len(uploads) > self.max_files:
            raise UploadError(f"{len(uploads)} files in one upload; the limit is {self.max_files} (max_upload_files)")
        for upload in uploads:
            check_upload(upload.name, upload.size, self.max_bytes)

    def add(
        self,
        uploads: Sequence[Upload],
        progress: Progress | None = None,
        strict: bool = True,
        fields: ArticleFields | None = None,
    ) -> list[UploadResult]:
        """Keep and ingest each file in turn, reporting one result per file.

        With `strict` (the API) a file that breaks the type or size rule refuses the whole batch;
        without it (the chat) that file is reported as skipped and the others go ahead. `fields` (see
        `upload_fields`) replace the title, outlet, date or URL of every article of the upload.
        """
        if strict:
            self.check(uploads)
        else:
            self.check_writable()
        results: list[UploadResult] = []
        with self._lock:
            for index, upload in enumerate(uploads):
                if progress is not None:
                    progress(index, len(uploads), upload.name)
                try:
                    check_upload(upload.name, upload.size, self.max_bytes)
                except UploadError as exc:
                    results.append(UploadResult(upload.name, "skipped", reason=str(exc)))
                    continue
                results.append(self._ingest_one(upload, fields))
        if progress is not None:
            progress(len(uploads), len(uploads), "")
        return results

    def remove(self, article_id: str) -> int:
        self.check_writable()
        with self._lock:
            return self.stored.remove(article_id)

    def _ingest_one(self, upload: Upload, fields: ArticleFields | None = None) -> UploadResult:
        target = self.folder / safe_name(upload.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        written = _write_within(target, upload.content, self.max_bytes)
        if written > self.max_bytes:  # the client's size was wrong; the bytes decide
            target.unlink(missing_ok=True)
            return UploadResult(
                upload.name, "skipped", reason=f"over the {self.max_bytes / 1e6:.2f} MB upload limit (max_upload_mb)"
            )
        report = self.stored.ingest([target], namespace=UPLOAD_NAMESPACE, fields=fields)
        result = _result(upload.name, target, report)
        stored = set(report.added + report.updated)
        undated = [i for i in sorted(stored) if not self.stored.article(i).published]
        if undated:  # dates drive "this week" questions and the date filters: say so where it can be mended
            result = replace(result, notes=(*result.notes, *(NO_DATE_NOTE.format(id=i) for i in undated)))
        return result


def _outlets(records: Iterable[ArticleRecord]) -> list[str]:
    return sorted({record.source for record in records if record.source})


def _write_within(target: Path, content: IO[bytes] | Path, max_bytes: int) -> int:
    """Copy at most max_bytes + 1 bytes to `target` (through a temp file and an atomic rename); returns the count."""
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=target.suffix)
    written = 0
    try:
        with os.fdopen(handle, "wb") as out:
            source = content.open("rb") if isinstance(content, Path) else content
            try:
                while written <= max_bytes:
                    block = source.read(min(1 << 20, max_bytes + 1 - written))
                    if not block:
                        break
                    out.write(block)
                    written += len(block)
            finally:
                if isinstance(content, Path):
                    source.close()
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return written


def _result(name: str, stored: Path, report: IngestReport) -> UploadResult:
    skipped = "; ".join(item.reason for item in report.skipped)
    notes = tuple(note for _, note in report.notes)
    if report.added or report.updated:
        status = "added" if report.added else "updated"
        ids = tuple(report.added + report.updated)
        return UploadResult(name, status, ids, reason=skipped, stored_as=stored.name, notes=notes)
    if report.unchanged:
        ids = tuple(report.unchanged)
        return UploadResult(name, "unchanged", ids, reason=skipped, stored_as=stored.name, notes=notes)
    stored.unlink(missing_ok=True)  # nothing of it is stored: do not keep the file either
    if report.duplicates:
        owners = tuple(owner for _, owner in report.duplicates)
        return UploadResult(name, "duplicate", owners, reason=f"same text as stored article {', '.join(owners)}")
    return UploadResult(name, "skipped", reason=skipped or "no article found in the file")


__all__ = [
    "ALLOWED_SUFFIXES",
    "Library",
    "LibraryStats",
    "StoredArticles",
    "Upload",
    "UploadResult",
    "check_upload",
    "safe_name",
    "upload_fields",
]
