"""A synthetic store for scale benchmarks: N chunks of made-up news text written through `Store`, no model loaded.

Each article has `CHUNKS_PER_ARTICLE` body chunks of about `CHUNK_CHARS` characters; its words are drawn from a
Zipf distribution (exponent `ZIPF_EXPONENT`) over `VOCABULARY` made-up words, so term frequencies look like
text's: a few very common words, a long tail of rare ones. Vectors are random unit vectors of the bundled model's
dimension (`DIMENSION`), so nothing is embedded, and everything goes through `Store.write` (article records,
chunk metadata, the generation and the write log), so the schema is the real one and `dossier serve`, `dossier
ingest` and the lexical index work on the result as on an ingested store. Seeded: the same arguments give the
same texts.

    PYTHONPATH=. .venv/bin/python bench/synthetic.py --chunks 100000 --store /tmp/synthetic
    PYTHONPATH=. .venv/bin/python bench/synthetic.py --chunks 1000000 --chroma-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.settings import Settings  # noqa: E402
from assistant.store import Store  # noqa: E402
from ingest.models import Article, Chunk  # noqa: E402

DIMENSION = 384  # all-MiniLM-L6-v2, the bundled model
VOCABULARY = 30_000
ZIPF_EXPONENT = 1.05
CHUNK_CHARS = 750
CHUNKS_PER_ARTICLE = 8
OUTLETS = 40
ARTICLES_PER_WRITE = 500  # one `Store.write` (one generation) per this many articles
FIRST_DAY = date(2023, 1, 1)
DAYS = 730
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ar", "en", "or")]


def vocabulary(rng: np.random.Generator, size: int = VOCABULARY) -> list[str]:
    """`size` distinct made-up words of 1-4 syllables, shorter ones first (common words are short, as in text)."""
    words: dict[str, None] = {}
    while len(words) < size:
        count = 1 + min(3, int(rng.exponential(1.2)))
        words.setdefault("".join(rng.choice(SYLLABLES, size=count)), None)
    return sorted(words, key=len)


class Writer:
    """Made-up articles and their chunks, drawn from one seeded generator."""

    def __init__(self, seed: int = 13) -> None:
        self.rng = np.random.default_rng(seed)
        self.words = np.array(vocabulary(self.rng))
        ranks = np.arange(1, len(self.words) + 1, dtype=np.float64)
        weights = ranks**-ZIPF_EXPONENT
        p = weights / weights.sum()
        self.cdf = np.cumsum(p)
        mean_chars = float((p * (np.char.str_len(self.words) + 1)).sum())
        self.words_per_chunk = max(10, round(CHUNK_CHARS / mean_chars))

    def text(self, words: int) -> str:
        ranks = np.minimum(np.searchsorted(self.cdf, self.rng.random(words)), len(self.words) - 1)
        drawn = self.words[ranks]
        sentences = np.array_split(drawn, max(1, words // 14))
        return " ".join(" ".join(part).capitalize() + "." for part in sentences if len(part))

    def article(self, n: int) -> tuple[Article, list[Chunk]]:
        bodies = [self.text(self.words_per_chunk) for _ in range(CHUNKS_PER_ARTICLE)]
        day = FIRST_DAY + timedelta(days=int(self.rng.integers(DAYS)))
        article = Article(
            id=f"syn-{n:07d}",
            title=self.text(6).rstrip(".").title(),
            text="\n\n".join(bodies),
            source=f"Outlet {int(self.rng.integers(OUTLETS)):02d} Daily",
            published=day.isoformat(),
        )
        chunks, start = [], 0
        for index, body in enumerate(bodies):
            end = start + len(body)
            chunks.append(Chunk(article, index, body, start, end, f"{article.title}\n{body}"))
            start = end + 2
        return article, chunks

    def vectors(self, rows: int) -> np.ndarray:
        vectors = self.rng.standard_normal((rows, DIMENSION), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def batches(self, chunks: int, first: int = 0) -> Iterator[list[tuple[Article, list[Chunk]]]]:
        articles = -(-chunks // CHUNKS_PER_ARTICLE)
        for start in range(first, first + articles, ARTICLES_PER_WRITE):
            yield [self.article(n) for n in range(start, min(first + articles, start + ARTICLES_PER_WRITE))]


def build(
    store: Store, chunks: int, seed: int = 13, progress: Callable[[int, float], None] | None = None
) -> dict[str, float]:
    """Write about `chunks` synthetic chunks (whole articles) into `store`; returns counts and seconds."""
    writer = Writer(seed)
    store.sweep()  # as an ingest does first: on an empty store it records that no write before intents left anything
    started = time.perf_counter()
    written = 0
    for batch in writer.batches(chunks, first=store.article_count()):
        rows = sum(len(article_chunks) for _, article_chunks in batch)
        items = [(article, article.text_hash, article_chunks) for article, article_chunks in batch]
        store.write(items, vectors=writer.vectors(rows))
        written += rows
        if progress:
            progress(written, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    return {"chunks": written, "seconds": seconds, "chunks_per_s": written / seconds if seconds else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, required=True, help="how many chunks to add")
    parser.add_argument("--store", type=Path, default=Path("data/synthetic"), help="embedded store folder")
    parser.add_argument("--chroma-url", default="", help="a Chroma server to write to instead")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    store = Store.from_settings(Settings(store=args.store, chroma_url=args.chroma_url))

    def progress(done: int, seconds: float) -> None:
        print(f"{done:>9} chunks  {seconds:7.1f} s  {done / seconds:6.0f}/s", flush=True)

    result = build(store, args.chunks, args.seed, progress)
    print(f"wrote {result['chunks']} chunks in {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
