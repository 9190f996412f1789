"""How much a question word says: its rarity, from general English frequencies blended with the store's own idf.

A store's idf alone fails on small libraries: in a store of one article every word of the article is
equally common, so "Hamas" weighs no more than "report". General English word frequencies (the
`wordfreq` package) know that "Hamas" is rare and "report" is not, whatever the store holds. Both are
put on the same scale, an idf over chunks: a word's general frequency times the words in a chunk is the
share of chunks expected to hold it. The store's own idf takes over as the store grows (it knows its
domain: in a library about Gaza, "Gaza" is common), reaching half the weight at
`STORE_HALF_WEIGHT_CHUNKS` chunks.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

from assistant.settings import CACHE_DIR

log = logging.getLogger(__name__)

# Words in a chunk of about 900 characters: turns a word's frequency into its expected chunk frequency.
WORDS_PER_CHUNK = 150
# Frequencies below this (words wordfreq has never seen: new names, typos) count as this rare.
FREQUENCY_FLOOR = 1e-7
# Chunks at which the store's idf and the general estimate weigh the same.
STORE_HALF_WEIGHT_CHUNKS = 2000


class IdfSource(Protocol):
    """What `Rarity` needs of a lexical index: its size in chunks and a stem's idf over them."""

    @property
    def size(self) -> int: ...

    def idf(self, stem: str) -> float: ...


@lru_cache(maxsize=65536)
def general_idf(word: str) -> float:
    """The idf a word would have over chunks of general English, from its `wordfreq` frequency.

    >>> general_idf("the") < general_idf("report") < general_idf("hamas") < general_idf("qzxv")
    True
    """
    frequency = max(word_frequency(word), FREQUENCY_FLOOR)
    return max(0.0, -math.log(min(1.0, frequency * WORDS_PER_CHUNK)))


def word_frequency(word: str) -> float:
    """`wordfreq.word_frequency(word, "en")`; a plain lowercase word is read from `WordList`'s copy of its list.

    >>> word_frequency("report") == __import__("wordfreq").word_frequency("report", "en")
    True
    """
    if word.isascii() and word.isalpha() and word.islower():
        found = _english().lookup(word)
        if found is not None:
            return found
    from wordfreq import word_frequency as frequency_of

    return float(frequency_of(word, "en"))


class WordList:
    """wordfreq's English list as a SQLite table in `CACHE_DIR`, built once: a lookup reads one row.

    wordfreq loads its whole list to answer one word (0.4-0.6 s with its import), which a one-shot
    `dossier ask` paid on every question. Only plain lowercase words are kept, the form for which wordfreq's
    answer is the list's value rounded to three significant digits (a word not in the list: 0); everything
    else asks wordfreq. When the table cannot be built or read, `lookup` says None and wordfreq answers.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"wordfreq-en-{version('wordfreq')}.sqlite"
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._failed = False

    def lookup(self, word: str) -> float | None:
        with self._lock:
            if self._failed:
                return None
            try:
                if self._connection is None:
                    self._connection = self._open()
                row = self._connection.execute("SELECT frequency FROM words WHERE word = ?", (word,)).fetchone()
            except (OSError, sqlite3.Error) as exc:
                log.warning("word list %s unusable (%s); asking wordfreq", self.path, exc)
                self._failed = True
                return None
        return float(row[0]) if row else 0.0

    def _open(self) -> sqlite3.Connection:
        if not self.path.is_file():
            from wordfreq import get_frequency_dict

            rows = [
                (word, float(f"{frequency:.3g}"))
                for word, frequency in get_frequency_dict("en").items()
                if word.isascii() and word.isalpha() and word.islower()
            ]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            partial.unlink(missing_ok=True)
            with sqlite3.connect(partial) as building:
                building.execute("CREATE TABLE words (word TEXT PRIMARY KEY, frequency REAL) WITHOUT ROWID")
                building.executemany("INSERT INTO words VALUES (?, ?)", rows)
            building.close()
            partial.replace(self.path)  # another process never reads half a table
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            connection.execute("SELECT frequency FROM words WHERE word = 'the'").fetchone()
        except sqlite3.DatabaseError:  # damaged: the next process builds it again
            connection.close()
            self.path.unlink(missing_ok=True)
            raise
        return connection


@lru_cache(maxsize=1)
def _english() -> WordList:
    return WordList(CACHE_DIR)


class Rarity:
    """A word's weight in a question: general English rarity blended with the store's idf by store size.

    >>> rarity = Rarity()                      # no store: general English only
    >>> rarity("hamas", "hama") > rarity("report", "report")
    True
    """

    def __init__(self, index: IdfSource | None = None, half_weight_chunks: int = STORE_HALF_WEIGHT_CHUNKS) -> None:
        self.index = index
        self.half_weight_chunks = half_weight_chunks

    def store_share(self) -> float:
        """How much the store's own idf counts, 0..1: none for an empty store, half at `half_weight_chunks`."""
        size = self.index.size if self.index is not None else 0
        return size / (size + self.half_weight_chunks)

    def __call__(self, word: str, stem: str) -> float:
        """The weight of `word` (lowercased surface form; `stem` is its stemmed term)."""
        share = self.store_share()
        general = general_idf(word)
        if share == 0.0 or self.index is None:
            return general
        return (1.0 - share) * general + share * self.index.idf(stem)
