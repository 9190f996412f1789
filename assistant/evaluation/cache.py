"""The store an evaluation runs on: `--articles` ingested into a cached store keyed by the files and the code."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ingest as ingest_package
from assistant import __version__
from assistant import embeddings as embeddings_module
from assistant import store as store_module
from assistant.errors import DossierError
from assistant.library import StoredArticles
from assistant.settings import Settings
from assistant.store import Store
from ingest.loaders import iter_files
from ingest.models import Skipped
from ingest.pipeline import IngestReport


@dataclass(frozen=True)
class StoreState:
    """The store a run used, and whether `--articles` were ingested into it or it was reused as it was."""

    settings: Settings
    location: str
    reused: bool
    ingest: dict[str, Any] | None = None


def cache_home() -> Path:
    """Dossier's cache folder: $XDG_CACHE_HOME/dossier, else ~/.cache/dossier."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dossier"


def articles_fingerprint(paths: Sequence[str | Path], settings: Settings) -> str:
    """A key for "these article files, ingested this way": each file's path, size and mtime, the
    settings that shape the stored chunks, and the code that makes them (the `ingest` package, the
    store and the embedder: a change to cleaning or chunking must not reuse chunks made before it).
    Any change gives a new key.
    """
    code = sorted(Path(ingest_package.__file__).parent.glob("*.py")) + [
        Path(store_module.__file__),
        Path(embeddings_module.__file__),
    ]
    parts = [
        hashlib.sha256(b"".join(file.read_bytes() for file in code)).hexdigest(),
        __version__,
        settings.embedding_model,
        settings.embedding_dtype,
        str(settings.chunk_size),
        str(settings.chunk_overlap),
        str(settings.max_file_mb),
        settings.collection,
    ]
    for item in iter_files(paths):
        if isinstance(item, Skipped):
            parts.append(f"skipped\t{item.path}")
        else:
            stat = item[0].stat()
            parts.append(f"{item[0].resolve()}\t{item[1].resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def prepare_store(
    settings: Settings,
    articles: Sequence[str | Path] = (),
    store: Path | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
) -> StoreState:
    """The store to evaluate on; with `articles`, brought up to date first.

    Without `articles`: the given `store`, or the configured one, as it is. With `articles`: the given
    `store`, or (when none is given) an embedded store in the cache folder keyed by
    `articles_fingerprint`, so runs on the same files share it and runs with other chunking do not.
    A marker beside the cache records the fingerprint and the store's write generation after a
    complete ingest; when both still match, ingest is skipped and the run starts at once. Otherwise
    the ingest pipeline runs, which itself skips unchanged articles (an interrupted ingest resumes).
    """
    if not articles:
        chosen = settings.with_overrides(store=store)
        return StoreState(chosen, chosen.chroma_url or str(chosen.store), reused=True)
    fingerprint = articles_fingerprint(articles, settings)
    root = cache_dir or cache_home() / "eval-stores"
    if store is None:
        chosen = settings.with_overrides(store=root / fingerprint / "store", chroma_url="")
    else:
        chosen = settings.with_overrides(store=store)
    location = chosen.chroma_url or str(Path(chosen.store).resolve())
    the_store = Store.from_settings(chosen)
    marker = _Marker.of(root, location, chosen.collection)
    if marker.matches(fingerprint, the_store):
        return StoreState(chosen, location, reused=True, ingest=marker.recorded.get("ingest"))
    report = StoredArticles(the_store, chosen).ingest(articles, progress=progress)
    _check_ingested(report, articles)
    marker.record(fingerprint, the_store, location, report)
    return StoreState(chosen, location, reused=False, ingest=report.to_json())


class _Marker:
    """The file that records a complete ingest into a store: the articles' fingerprint and the store's generation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.recorded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            self.recorded = {}

    @classmethod
    def of(cls, root: Path, location: str, collection: str) -> _Marker:
        """The marker of the store at `location` (a folder or a server) and its collection, under `root`/markers."""
        key = hashlib.sha256(f"{location}\n{collection}".encode()).hexdigest()[:20]
        return cls(root / "markers" / f"{key}.json")

    def matches(self, fingerprint: str, store: Store) -> bool:
        """Whether `store` still holds what the last complete ingest of these files left (and is not empty)."""
        return bool(
            self.recorded.get("fingerprint") == fingerprint
            and self.recorded.get("generation") == store.generation()
            and store.article_count()
        )

    def record(self, fingerprint: str, store: Store, location: str, report: IngestReport) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            json.dumps(
                {
                    "fingerprint": fingerprint,
                    "generation": store.generation(),
                    "store": location,
                    "ingest": report.to_json(),
                }
            ),
            encoding="utf-8",
        )


def _check_ingested(report: IngestReport, articles: Sequence[str | Path]) -> None:
    """Refuse to evaluate on a store that none of `articles` reached (all skipped), saying why for the first few."""
    if not (report.stored or report.unchanged or report.duplicates):
        reasons = "; ".join(f"{item.path}: {item.reason}" for item in report.skipped[:3])
        raise DossierError(
            f"no articles could be ingested from {', '.join(map(str, articles))}" + (f" ({reasons})" if reasons else "")
        )
