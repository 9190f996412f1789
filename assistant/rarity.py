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

import math
from functools import lru_cache
from typing import Protocol

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
    from wordfreq import word_frequency

    frequency = max(word_frequency(word, "en"), FREQUENCY_FLOOR)
    return max(0.0, -math.log(min(1.0, frequency * WORDS_PER_CHUNK)))


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
