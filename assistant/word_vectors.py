"""Word vectors kept on disk beside the store: the embedding model applied to single words, once per word.

The reader's `word_match` compares the question's terms with each candidate sentence's words by meaning.
A word's vector does not depend on where the word appears, so it is computed once (by ingest for the words
of the chunks it writes, or the first time a question meets the word) and read from a SQLite file after
that, by every process that serves the store. The file is a cache: deleting it loses nothing, and a file
that cannot be opened or written only costs time (the words are encoded again).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS words (word TEXT PRIMARY KEY, vector BLOB NOT NULL)"
_BATCH = 500  # words per SELECT (SQLite's limit on bound parameters is 32,766)


def cache_path(folder: Path, model_name: str) -> Path:
    """The cache file of `model_name`'s word vectors in `folder` (one file per model: vectors differ)."""
    digest = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:12]
    return folder / f"word-vectors-{digest}.sqlite"


class WordVectors:
    """Unit vectors of single words, read from `path` when known and computed with `encode` when not.

    >>> import numpy as np
    >>> calls = []
    >>> def encode(words):
    ...     calls.append(list(words))
    ...     return np.eye(3, dtype=np.float32)[: len(words)]
    >>> vectors = WordVectors(None, encode)
    >>> sorted(vectors.lookup(["orbit", "launch"]))
    ['launch', 'orbit']
    >>> _ = vectors.lookup(["orbit"]); calls
    [['orbit', 'launch']]
    """

    def __init__(self, path: Path | None, encode: Callable[[list[str]], np.ndarray]) -> None:
        self.path = path
        self._encode = encode
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._memory: dict[str, np.ndarray] = {}  # only when there is no file

    def lookup(self, words: Iterable[str]) -> dict[str, np.ndarray]:
        """word -> unit float32 vector for every word given."""
        wanted = list(dict.fromkeys(words))
        found = self._read(wanted)
        missing = [word for word in wanted if word not in found]
        if missing:
            computed = self._compute(missing)
            self._write(computed)
            found.update(computed)
        return found

    def add(self, words: Iterable[str]) -> int:
        """Compute and keep the vectors of those `words` not known yet (ingest); returns how many were new."""
        wanted = list(dict.fromkeys(words))
        known = self._read(wanted)
        missing = [word for word in wanted if word not in known]
        if missing:
            self._write(self._compute(missing))
        return len(missing)

    def _compute(self, words: list[str]) -> dict[str, np.ndarray]:
        # Rounded as stored, so a word's vector is the same whether it was just computed or read back.
        vectors = np.asarray(self._encode(words), dtype=np.float32).astype("<f2").astype(np.float32)
        return dict(zip(words, vectors, strict=True))

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None and self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                log.warning("word vector cache %s unavailable (%s): words are encoded each time", self.path, exc)
                self.path = None
        return self._db

    def _read(self, words: list[str]) -> dict[str, np.ndarray]:
        with self._lock:
            db = self._connection()
            if db is None:
                return {word: self._memory[word] for word in words if word in self._memory}
            found: dict[str, np.ndarray] = {}
            try:
                for start in range(0, len(words), _BATCH):
                    batch = words[start : start + _BATCH]
                    marks = ",".join("?" * len(batch))
                    for word, blob in db.execute(f"SELECT word, vector FROM words WHERE word IN ({marks})", batch):
                        found[word] = np.frombuffer(blob, dtype="<f2").astype(np.float32)
            except sqlite3.Error as exc:
                log.warning("word vector cache %s unreadable (%s): encoding instead", self.path, exc)
                return {}
            return found

    def _write(self, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            db = self._connection()
            if db is None:
                if len(self._memory) > 200_000:
                    self._memory.clear()
                self._memory.update(vectors)
                return
            rows = [(word, vector.astype("<f2").tobytes()) for word, vector in vectors.items()]
            try:
                db.executemany("INSERT OR IGNORE INTO words (word, vector) VALUES (?, ?)", rows)
            except sqlite3.Error as exc:  # read-only folder, disk full: the answer does not depend on the cache
                log.warning("word vector cache %s not written (%s)", self.path, exc)
