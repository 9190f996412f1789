"""The lexical (BM25) index of the store's current chunks: segments on disk, kept up to date from the store's write log.

The index is a list of immutable segments plus a tombstone set. A segment holds, for some chunks, their
term frequencies both ways (postings per term for scoring, terms per chunk for tombstoning and
near-duplicate checks), their lengths, and the few fields filters need (outlet, article, day, kind).
Term ids are global: a segment adds the terms it is the first to use, so the vocabulary is the
segments' new terms in order. BM25 statistics (document frequencies, average length) are kept over the
live chunks of all segments, so scores equal those of bm25s built afresh over the current chunks (its
default "lucene" variant, `K1` and `B` below; `tests/test_lexical.py` checks it).

A reader at generation g asks the store which articles generations g+1.. touched (`Store.changes`),
tombstones those articles' chunks, and adds one segment with their current chunks; the row-aligned arrays and
id maps grow by that segment's rows (an update costs the segment, not the index). The newest segments are then
merged while they are comparable in size (LSM-style, `MERGE_FACTOR`), so segments stay few (logarithmic in the
rows) and an update never rewrites a large one (`MERGE_SHARE`); `compact` merges everything. When the log cannot
tell (too far behind), or nothing usable is on disk, it rebuilds from every current chunk.

On disk (`Store.cache`, one folder per collection) each segment is a folder of `.npy` arrays (memory-
mapped when loaded) and a JSON file of ids, written under a temporary name and renamed; `manifest.json`,
naming the segments, the tombstones and the generation they hold, is written last, also by rename. A
process killed mid-write leaves the previous manifest and its segments intact; leftovers are removed by
the next writer. A manifest of another format, another store, or with unreadable segments is rebuilt.
Several processes share the folder: a writer holds a file lock and only writes over the state it loaded.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.dates import published_ordinal
from assistant.filters import Filters
from assistant.models import Passage
from assistant.store import Store, StoredChunk
from assistant.text import terms

if TYPE_CHECKING:
    import scipy.sparse

# scipy.sparse is imported where segments are built or merged, not here: a process that loads the index from disk
# and answers (a cold `dossier ask`) never needs it, and it is a tenth of a second or more to import.

log = logging.getLogger(__name__)

FORMAT = 1
# bm25s's defaults (method "lucene"): the saturation of term frequency and the weight of chunk length.
K1 = 1.5
B = 0.75
# A chunk with no content term is indexed under this term (as the rebuild-from-scratch index always did).
EMPTY_TERM = "_empty_"
# Caption chunks count this much of their BM25 score (a photo caption repeats the article's words).
CAPTION_WEIGHT = 0.5
# Merges after an update are geometric (LSM-style): the newest segments are merged into one while the newest
# holds at least 1/MERGE_FACTOR of the rows of the one before it, so segment sizes fall by about this factor from
# the oldest to the newest and their number stays logarithmic in the rows...
MERGE_FACTOR = 4
# ...unless the merged segment would hold more than this share of all rows (or MERGE_FLOOR rows, whichever is
# more): a single update never rewrites a large segment (those wait for `compact`). Segments kept apart by the
# share each hold over half of it, so there are at most 2 / MERGE_SHARE of them besides the geometric tail.
MERGE_SHARE = 0.25
MERGE_FLOOR = 10_000
# A question's keyword search looks its candidate rows up in the postings while they are under 1/DENSE_SHARE of
# all rows; beyond that, scoring every row at once is cheaper.
DENSE_SHARE = 8
# A rebuild indexes this many chunks at a time (then merges the slices): its memory is a slice's texts and terms.
REBUILD_SLICE = 50_000
MANIFEST = "manifest.json"
# Test hook: "STAGE:PATH" makes the writer create PATH and stall at STAGE ("segment": half a segment
# written; "manifest": segments written, manifest not yet), so a test can kill it there.
STALL_ENV = "DOSSIER_LEXICAL_TEST_STALL"

_ARRAYS = ("post_ptr", "post_rows", "post_tf", "row_ptr", "row_terms", "row_tf", "lengths", "published", "weights")


class Guard:
    """Many readers or one writer, writers first: a question reads one state of the index while a refresh in another
    thread waits, and a refresh waits only for the questions already reading (new ones wait for it). Writers are
    one at a time because they hold the index's refresh lock too. Not re-entrant: a reader must not read again,
    or refresh, inside its `reading()`."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writers = 0  # waiting or writing

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: self._writers == 0)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers += 1
            self._condition.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._condition:
                self._writers -= 1
                self._condition.notify_all()


class Unusable(Exception):
    """A saved index that cannot serve (says why): it is rebuilt."""


@dataclass
class Segment:
    """Some chunks' term frequencies (both ways) and filter fields; immutable once built."""

    name: str
    n_terms: int  # global term ids below this may occur here
    new_terms: list[str]  # terms this segment added to the vocabulary, in id order
    chunk_ids: list[str]
    article_ids: list[str]
    sources: list[str]
    arrays: dict[str, np.ndarray]
    on_disk: bool = False

    @property
    def rows(self) -> int:
        return len(self.chunk_ids)

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows (local) containing `term`, and its frequency in each."""
        if term >= self.n_terms:
            return _EMPTY_INT, _EMPTY_FLOAT
        ptr = self.arrays["post_ptr"]
        start, end = int(ptr[term]), int(ptr[term + 1])
        return self.arrays["post_rows"][start:end], self.arrays["post_tf"][start:end]

    def row_terms(self, row: int) -> np.ndarray:
        ptr = self.arrays["row_ptr"]
        return self.arrays["row_terms"][int(ptr[row]) : int(ptr[row + 1])]

    def document_frequency(self, live: np.ndarray, n_terms: int) -> np.ndarray:
        """How many live rows contain each term."""
        ptr, row_terms = self.arrays["row_ptr"], self.arrays["row_terms"]
        if live.all():
            return np.bincount(row_terms, minlength=n_terms)
        keep = np.repeat(live, np.diff(ptr))
        return np.bincount(row_terms[keep], minlength=n_terms)

    def matrix(self, n_terms: int) -> scipy.sparse.csr_matrix:
        """rows x terms term frequencies."""
        import scipy.sparse

        a = self.arrays
        return scipy.sparse.csr_matrix((a["row_tf"], a["row_terms"], a["row_ptr"]), shape=(self.rows, n_terms))


_EMPTY_INT = np.zeros(0, dtype=np.int32)
_EMPTY_FLOAT = np.zeros(0, dtype=np.float32)


def build_segment(
    chunks: Sequence[StoredChunk], vocabulary: dict[str, int], terms_list: list[str], name: str = ""
) -> Segment:
    """A segment of `chunks`, adding the terms they are the first to use to `vocabulary` (and `terms_list`)."""
    import scipy.sparse

    first_new = len(terms_list)
    rows: list[int] = []
    cols: list[int] = []
    counts: list[int] = []
    lengths = np.zeros(len(chunks), dtype=np.float32)
    for row, chunk in enumerate(chunks):
        doc = terms(f"{chunk.passage.title} {chunk.passage.text}") or [EMPTY_TERM]
        lengths[row] = len(doc)
        for term, count in Counter(doc).items():
            term_id = vocabulary.get(term)
            if term_id is None:
                term_id = vocabulary[term] = len(terms_list)
                terms_list.append(term)
            rows.append(row)
            cols.append(term_id)
            counts.append(count)
    shape = (len(chunks), len(terms_list))
    matrix = scipy.sparse.csr_matrix(
        (np.array(counts, dtype=np.float32), (np.array(rows, dtype=np.int32), np.array(cols, dtype=np.int32))),
        shape=shape,
    )
    passages = [chunk.passage for chunk in chunks]
    return _segment_from_matrix(
        name or _new_name(),
        matrix,
        terms_list[first_new:],
        [chunk.id for chunk in chunks],
        [p.article_id for p in passages],
        [p.source for p in passages],
        lengths,
        np.array([published_ordinal(p.published) for p in passages], dtype=np.int64),
        np.array([CAPTION_WEIGHT if p.kind == "caption" else 1.0 for p in passages], dtype=np.float32),
    )


def _segment_from_matrix(
    name: str,
    matrix: scipy.sparse.csr_matrix,
    new_terms: list[str],
    chunk_ids: list[str],
    article_ids: list[str],
    sources: list[str],
    lengths: np.ndarray,
    published: np.ndarray,
    weights: np.ndarray,
) -> Segment:
    import scipy.sparse

    csr = scipy.sparse.csr_matrix(matrix, dtype=np.float32)
    csr.sort_indices()
    csc = csr.tocsc()
    csc.sort_indices()
    arrays = {
        "post_ptr": csc.indptr.astype(np.int64),
        "post_rows": csc.indices.astype(np.int32),
        "post_tf": csc.data.astype(np.float32),
        "row_ptr": csr.indptr.astype(np.int64),
        "row_terms": csr.indices.astype(np.int32),
        "row_tf": csr.data.astype(np.float32),
        "lengths": np.asarray(lengths, dtype=np.float32),
        "published": np.asarray(published, dtype=np.int64),
        "weights": np.asarray(weights, dtype=np.float32),
    }
    return Segment(name, csr.shape[1], new_terms, chunk_ids, article_ids, sources, arrays)


def merge_segments(segments: Sequence[Segment], live: Sequence[np.ndarray], n_terms: int) -> Segment:
    """One segment with the live rows of `segments` (consecutive ones: their new terms stay in id order)."""
    import scipy.sparse

    matrix = scipy.sparse.vstack([segment.matrix(n_terms) for segment in segments], format="csr")
    keep = np.concatenate(live) if segments else np.zeros(0, dtype=bool)
    rows = np.flatnonzero(keep)

    def kept(values: list[str]) -> list[str]:
        return [values[i] for i in rows]

    def joined(key: str) -> np.ndarray:
        return np.concatenate([segment.arrays[key] for segment in segments])[rows]

    return _segment_from_matrix(
        _new_name(),
        matrix[rows],
        [term for segment in segments for term in segment.new_terms],
        kept([cid for segment in segments for cid in segment.chunk_ids]),
        kept([aid for segment in segments for aid in segment.article_ids]),
        kept([source for segment in segments for source in segment.sources]),
        joined("lengths"),
        joined("published"),
        joined("weights"),
    )


def _new_name() -> str:
    return f"seg-{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def _stall(stage: str) -> None:
    """The crash test's hook (see `STALL_ENV`): announce the stage by creating a file, then wait to be killed."""
    hook = os.environ.get(STALL_ENV, "")
    if hook.partition(":")[0] == stage:
        Path(hook.partition(":")[2]).touch()
        time.sleep(3600)


# -- on disk -------------------------------------------------------------------------------------


class Folder:
    """A lexical index's folder: segments, tombstone files and the manifest that names the current ones."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def locked(self, exclusive: bool) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def manifest(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.path / MANIFEST).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def read_segment(self, name: str, expected_rows: int) -> Segment:
        folder = self.path / name
        meta = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r") for key in _ARRAYS}
        segment = Segment(
            name,
            int(meta["n_terms"]),
            list(meta["new_terms"]),
            list(meta["chunk_ids"]),
            list(meta["article_ids"]),
            list(meta["sources"]),
            arrays,
            on_disk=True,
        )
        rows = segment.rows
        checks = {
            "rows": rows == expected_rows,
            "ids": len(segment.article_ids) == len(segment.sources) == rows,
            "row arrays": all(len(arrays[key]) == rows for key in ("lengths", "published", "weights")),
            "row_ptr": len(arrays["row_ptr"]) == rows + 1 and int(arrays["row_ptr"][-1]) == len(arrays["row_terms"]),
            "post_ptr": len(arrays["post_ptr"]) == segment.n_terms + 1
            and int(arrays["post_ptr"][-1]) == len(arrays["post_rows"]),
            "tf": len(arrays["row_tf"]) == len(arrays["row_terms"]) == len(arrays["post_tf"]),
        }
        broken = [name for name, ok in checks.items() if not ok]
        if broken:
            raise ValueError(f"segment {name}: inconsistent {', '.join(broken)}")
        return segment

    def write_segment(self, segment: Segment) -> None:
        """Write `segment` under a temporary name, then rename it into place (a folder rename is atomic)."""
        temporary = self.path / f".tmp-{segment.name}"
        temporary.mkdir(parents=True)
        meta = {
            "n_terms": segment.n_terms,
            "new_terms": segment.new_terms,
            "chunk_ids": segment.chunk_ids,
            "article_ids": segment.article_ids,
            "sources": segment.sources,
        }
        for i, key in enumerate(_ARRAYS):
            _write_file(temporary / f"{key}.npy", lambda handle, key=key: np.save(handle, segment.arrays[key]))
            if i == len(_ARRAYS) // 2:
                _stall("segment")
        _write_file(temporary / "ids.json", lambda handle: handle.write(json.dumps(meta).encode("utf-8")))
        os.rename(temporary, self.path / segment.name)

    def write_manifest(self, manifest: dict[str, Any], deleted: np.ndarray) -> None:
        name = f"deleted-{manifest['id']}.npy"
        _write_file(self.path / name, lambda handle: np.save(handle, deleted.astype(np.int64)))
        manifest = {**manifest, "deleted": name}
        _stall("manifest")
        temporary = self.path / f".tmp-{MANIFEST}"
        _write_file(temporary, lambda handle: handle.write(json.dumps(manifest).encode("utf-8")))
        os.replace(temporary, self.path / MANIFEST)
        _fsync_dir(self.path)

    def remove_unlisted(self, manifest: dict[str, Any]) -> None:
        """Delete what the manifest does not name: replaced segments, leftovers of an interrupted write."""
        keep = {MANIFEST, ".lock", manifest.get("deleted", ""), *manifest.get("segments", [])}
        for entry in self.path.iterdir():
            if entry.name not in keep:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def _write_file(path: Path, write: Any) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- the index -----------------------------------------------------------------------------------


class LexicalIndex:
    """BM25 over the store's current chunks, loaded from its folder and brought up to date from the write log.

    >>> index = LexicalIndex(store)                       # doctest: +SKIP
    >>> index.refresh()                                   # load, then apply the writes since the saved state
    >>> index.scores(["quorvath", "glacier"])             # BM25 score per row (0 for deleted rows)   # doctest: +SKIP
    >>> index.chunk_ids[int(index.scores(["quorvath"]).argmax())]                                     # doctest: +SKIP
    'quorvath#3f2a...#0'

    Memory holds ids, integer codes and arrays; passage texts stay in the store (`Store.passages`).
    """

    def __init__(self, store: Store, folder: Path | None = None) -> None:
        self.store = store
        if folder is None and store.cache is not None:
            folder = store.cache / store.collection
        self.folder = Folder(folder) if folder is not None else None
        self._lock = threading.Lock()  # one refresh at a time
        self.guard = Guard()  # questions read one state: a refresh changes it only between them (`Guard`)
        self.generation = -1
        self._applied: set[str] = set()  # log entries of `generation` already applied
        self._base = ""  # id of the manifest on disk this state extends ("" when none)
        self._replace = False  # what is on disk could not be loaded: the next save replaces it
        self._average: tuple[tuple[int, int, int], float] = ((-1, -1, -1), 1.0)  # (state, average live length)
        self._reset()

    def _reset(self) -> None:
        self.segments: list[Segment] = []
        self.vocabulary: dict[str, int] = {}
        self.terms: list[str] = []
        self._offsets = np.zeros(1, dtype=np.int64)
        self.live = np.zeros(0, dtype=bool)
        self._df = np.zeros(0, dtype=np.int64)
        self.chunk_ids: list[str] = []
        self.positions: dict[str, int] = {}  # chunk id -> row, live rows only
        self.lengths = np.zeros(0, dtype=np.float32)
        self.published = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros(0, dtype=np.float32)
        self.source_codes = np.zeros(0, dtype=np.int32)
        self.article_codes = np.zeros(0, dtype=np.int32)
        self.source_index: dict[str, int] = {}  # in code order (codes are given in order of first appearance)
        self.article_index: dict[str, int] = {}
        self._code_counts: list[tuple[int, int]] = []  # (sources, articles) coded up to the end of each segment

    # -- reading ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Live chunks."""
        return int(self.live.sum())

    def idf(self, term: str) -> float:
        """BM25 (lucene) idf of a term over the live chunks; a term no live chunk has counts as rarest."""
        term_id = self.vocabulary.get(term)
        df = int(self._df[term_id]) if term_id is not None and term_id < len(self._df) else 0
        total = max(1, self.size)
        return math.log(1 + (total - df + 0.5) / (df + 0.5))

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """Each row's BM25 score for the query terms (repeats count again, as in bm25s); 0 for deleted rows."""
        return self._all_scores(self._query_terms(query))

    def _all_scores(self, weighted: list[tuple[int, np.float32]]) -> np.ndarray:
        scores = np.zeros(len(self.live), dtype=np.float32)
        if not weighted:
            return scores
        norm = self._norm(slice(None))
        for term_id, idf in weighted:
            for segment, offset in zip(self.segments, self._offsets, strict=False):
                rows, tf = segment.postings(term_id)
                if len(rows):
                    rows = rows + offset
                    scores[rows] += idf * (tf / (norm[rows] + tf))
        scores[~self.live] = 0.0
        return scores

    def _query_terms(self, query: Sequence[str]) -> list[tuple[int, np.float32]]:
        """(term id, idf) of each query term some live row has, in the query's order (repeats kept)."""
        # A term another thread's refresh is adding may have an id but no frequency yet: it scores nothing.
        ids = [i for i in (self.vocabulary.get(term, len(self._df)) for term in query) if i < len(self._df)]
        total = self.size
        weighted = []
        for term_id in ids:
            df = int(self._df[term_id])
            if df and total:
                weighted.append((term_id, np.float32(math.log(1 + (total - df + 0.5) / (df + 0.5)))))
        return weighted

    def _norm(self, rows: slice | np.ndarray) -> np.ndarray:
        """BM25's length normalisation of some rows: K1 * (1 - B + B * length / average live length)."""
        key = (self.generation, len(self.live), self.size)
        if self._average[0] != key:
            self._average = (key, float(self.lengths[self.live].mean()) if key[2] else 1.0)
        return (K1 * ((1 - B) + B * self.lengths[rows] / self._average[1])).astype(np.float32)

    def _row_scores(self, rows: np.ndarray, weighted: list[tuple[int, np.float32]]) -> np.ndarray:
        """`scores` of some rows only (sorted, live), each found in the postings by binary search."""
        scores = np.zeros(len(rows), dtype=np.float32)
        norm = self._norm(rows)
        bounds = np.searchsorted(rows, self._offsets)  # where each segment's rows begin in `rows`
        for index, segment in enumerate(self.segments):
            first, last = int(bounds[index]), int(bounds[index + 1])
            if first == last:
                continue
            local, part, norms = rows[first:last] - self._offsets[index], scores[first:last], norm[first:last]
            for term_id, idf in weighted:
                posting_rows, tf = segment.postings(term_id)
                if not len(posting_rows):
                    continue
                at = np.minimum(np.searchsorted(posting_rows, local), len(posting_rows) - 1)
                hit = posting_rows[at] == local
                found = tf[at[hit]]
                part[hit] += idf * (found / (norms[hit] + found))
        return scores

    def words(self, row: int) -> frozenset[str]:
        """A row's distinct terms."""
        segment_index = int(np.searchsorted(self._offsets, row, side="right")) - 1
        local = row - int(self._offsets[segment_index])
        return frozenset(self.terms[i] for i in self.segments[segment_index].row_terms(local))

    def sketch(self, chunk_id: str) -> Passage | None:
        """What the index knows of a current chunk, as a `Passage` without text or span (start -1): its article,
        outlet, day and kind, which is what fusing rankings needs; None when the chunk is not current."""
        row = self.positions.get(chunk_id)
        if row is None:
            return None
        segment_index = int(np.searchsorted(self._offsets, row, side="right")) - 1
        segment, local = self.segments[segment_index], row - int(self._offsets[segment_index])
        day = int(self.published[row])
        return Passage(
            chunk_id,
            segment.article_ids[local],
            "",
            -1,
            -1,
            source=segment.sources[local],
            published=date.fromordinal(day).isoformat() if day > 0 else "",
            kind="caption" if self.weights[row] < 1.0 else "body",
        )

    def newest(self) -> date | None:
        """The newest publication day among the live chunks, or None when none is dated."""
        days = self.published[self.live]
        day = int(days.max()) if len(days) else 0
        return date.fromordinal(day) if day > 0 else None

    def mask(self, filters: Filters, as_of: date | None) -> np.ndarray:
        """Which rows are live and pass the filters and the as-of date."""
        keep = self.live.copy()
        if filters.sources:
            keep &= np.isin(self.source_codes, [self.source_index.get(s, -1) for s in filters.sources])
        if filters.article_ids:
            keep &= np.isin(self.article_codes, [self.article_index.get(a, -1) for a in filters.article_ids])
        if filters.since:
            keep &= self.published >= filters.since.toordinal()
        if filters.until:
            keep &= (self.published <= filters.until.toordinal()) & (self.published > 0)
        if as_of:
            keep &= self.published <= as_of.toordinal()
        return keep

    def search(
        self, question: str, n: int, filters: Filters, as_of: date | None, mask: np.ndarray | None = None
    ) -> list[Passage]:
        """The `n` best BM25 matches among the store's current chunks (after a refresh), caption scores weighted.

        `mask` is `self.mask(filters, as_of)` when the caller has it already. Texts are read from the store.
        """
        self.refresh()
        with self.guard.reading():
            hits = self.top(question, n, filters, as_of, mask)
        passages = self.store.passages([chunk_id for chunk_id, _ in hits])
        return [replace(p, score=score) for (_, score), p in zip(hits, passages, strict=True) if p is not None]

    def top(
        self, question: str, n: int, filters: Filters, as_of: date | None, mask: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """`search` as (chunk id, score), best first, without refreshing or reading texts: for a caller that has
        just refreshed and reads the texts of several rankings at once (`Retriever.retrieve`)."""
        weighted = self._query_terms(terms(question))
        if not weighted or n <= 0:
            return []
        if mask is None or len(mask) != len(self.live):  # another thread's refresh may have added rows since
            mask = self.mask(filters, as_of)
        rows, scores = self._best(weighted, n, mask)
        return [(self.chunk_ids[row], float(score)) for row, score in zip(rows, scores, strict=True)]

    def _best(self, weighted: list[tuple[int, np.float32]], n: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the `n` best weighted scores among `mask` (best first, positive only) and those scores.

        Exact without scoring every row (MaxScore): a term adds less than its idf to any row's score (tf / (tf +
        norm) < 1, and a row's weight is at most 1), so once the n-th best score among the rows holding one of
        the rarest terms exceeds the other terms' summed idfs, no row without those terms can enter the top n.
        The rarest terms are taken one by one until that holds; when the rows they hold are too many for
        lookups to pay, every row is scored instead.
        """
        bounds: dict[int, float] = {}
        for term_id, idf in weighted:
            bounds[term_id] = bounds.get(term_id, 0.0) + float(idf)
        rest = sum(bounds.values())
        held = np.zeros(len(self.live), dtype=bool)
        for term_id in sorted(bounds, key=lambda term: -bounds[term]):
            rest -= bounds[term_id]
            for segment, offset in zip(self.segments, self._offsets, strict=False):
                held[segment.postings(term_id)[0] + offset] = True
            held &= mask
            rows = np.flatnonzero(held)
            if len(rows) * DENSE_SHARE > len(self.live):
                scores = self._all_scores(weighted) * self.weights
                scores[~mask] = 0.0
                return _first(np.arange(len(scores)), scores, n)
            scores = self._row_scores(rows, weighted) * self.weights[rows]
            # (the margin covers float32 rounding in the scores)
            if len(rows) >= n and float(np.partition(scores, len(rows) - n)[len(rows) - n]) > rest * (1 + 1e-5):
                break
        return _first(rows, scores, n)

    def article_ids(self) -> set[str]:
        """Articles with live chunks."""
        names = list(self.article_index)
        return {names[code] for code in np.unique(self.article_codes[self.live])}

    # -- keeping up ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the index to the store's generation: load what is on disk, then apply the log since it."""
        generation = self.store.generation()
        if generation == self.generation:
            return
        with self._lock, self.guard.writing():
            if self.generation < 0 and self.folder is not None:
                self._load()
            changes = self.store.changes(self.generation) if self.generation >= 0 else None
            if changes is None:
                self._rebuild()
            else:
                now, entries = changes
                new = [entry for entry in entries if entry.id not in self._applied]
                if now == self.generation and not new:
                    return
                touched = set().union(*(entry.article_ids for entry in new))
                if touched:
                    self._apply(touched)
                self.generation = now
                self._applied = {entry.id for entry in entries if entry.generation == now}
                self._merge_tail()
            self._save()

    def compact(self) -> int:
        """Merge every segment into one without deleted rows, and save; returns how many segments there were."""
        self.refresh()
        with self._lock, self.guard.writing():
            before = len(self.segments)
            self._merge(0)
            self._save(force=True)
            return before

    def _rebuild(self) -> None:
        """Index every current chunk afresh, as one segment: built in slices of `REBUILD_SLICE` chunks read page by
        page, then merged, so that neither every text nor every term of a large store is held at once."""
        started = time.perf_counter()
        generation = self.store.generation()
        changes = self.store.changes(generation)
        self._reset()
        slices: list[Segment] = []
        pending: list[StoredChunk] = []
        for page in self.store.current_chunk_pages():
            pending.extend(page)
            if len(pending) >= REBUILD_SLICE:
                slices.append(build_segment(pending, self.vocabulary, self.terms))
                pending = []
        if pending or not slices:
            slices.append(build_segment(pending, self.vocabulary, self.terms))
        rows = [np.ones(part.rows, dtype=bool) for part in slices]
        whole = slices[0] if len(slices) == 1 else merge_segments(slices, rows, len(self.terms))
        del slices, rows
        if whole.rows:
            self._append_segment(whole)
        self.generation = generation
        self._applied = {entry.id for entry in changes[1] if entry.generation == generation} if changes else set()
        self._base = ""
        log.info("lexical index rebuilt: %d chunks in %.1f s", whole.rows, time.perf_counter() - started)

    def _apply(self, article_ids: set[str]) -> None:
        """Tombstone the chunks of `article_ids`, and add a segment with their current chunks."""
        codes = [self.article_index[a] for a in article_ids if a in self.article_index]
        dead = np.flatnonzero(self.live & np.isin(self.article_codes, codes))
        self._tombstone(dead)
        self._add_segment(self.store.article_chunks(article_ids))

    def _tombstone(self, rows: np.ndarray) -> None:
        for row in rows:
            row = int(row)
            for term_id in self._row_term_ids(row):
                self._df[term_id] -= 1
            self.positions.pop(self.chunk_ids[row], None)
        self.live[rows] = False

    def _row_term_ids(self, row: int) -> np.ndarray:
        segment_index = int(np.searchsorted(self._offsets, row, side="right")) - 1
        return self.segments[segment_index].row_terms(row - int(self._offsets[segment_index]))

    def _add_segment(self, chunks: Sequence[StoredChunk]) -> None:
        if chunks:
            self._append_segment(build_segment(chunks, self.vocabulary, self.terms))

    def _append_segment(self, segment: Segment) -> None:
        """Add `segment` (built over this index's vocabulary) as the newest, all its rows live."""
        self.segments.append(segment)
        self.live = np.concatenate([self.live, np.ones(segment.rows, dtype=bool)])
        df = np.zeros(len(self.terms), dtype=np.int64)
        df[: len(self._df)] = self._df
        self._df = df + segment.document_frequency(np.ones(segment.rows, dtype=bool), len(self.terms))
        self._append_rows(segment)

    def _derive(self) -> None:
        """The row-aligned arrays and id maps, from the segments (and `live`): each segment's rows appended in turn."""
        segments, self.segments = self.segments, []
        self._truncate_rows(0)
        for segment in segments:
            self.segments.append(segment)
            self._append_rows(segment)

    def _append_rows(self, segment: Segment) -> None:
        """Extend the row-aligned arrays and id maps with the rows of `segment`, the newest (`live` covers them).

        The cost is the segment's, not the index's: earlier rows keep their codes (a new outlet or article gets
        the next code), so the result equals `_derive` over all segments.
        """
        start = len(self.chunk_ids)
        self._offsets = np.append(self._offsets, start + segment.rows)
        self.chunk_ids.extend(segment.chunk_ids)
        live = self.live[start : start + segment.rows]
        self.positions.update((cid, start + i) for i, cid in enumerate(segment.chunk_ids) if live[i])
        arrays = segment.arrays
        self.lengths = np.concatenate([self.lengths, np.asarray(arrays["lengths"], dtype=np.float32)])
        self.published = np.concatenate([self.published, np.asarray(arrays["published"], dtype=np.int64)])
        self.weights = np.concatenate([self.weights, np.asarray(arrays["weights"], dtype=np.float32)])
        self.source_codes = np.concatenate([self.source_codes, _extend_codes(segment.sources, self.source_index)])
        self.article_codes = np.concatenate(
            [self.article_codes, _extend_codes(segment.article_ids, self.article_index)]
        )
        self._code_counts.append((len(self.source_index), len(self.article_index)))

    def _truncate_rows(self, first: int) -> None:
        """Undo `_append_rows` for the segments from index `first` on (before they are replaced by a merge)."""
        start = int(self._offsets[first])
        for cid in self.chunk_ids[start:]:
            if self.positions.get(cid, -1) >= start:
                del self.positions[cid]
        del self.chunk_ids[start:]
        self._offsets = self._offsets[: first + 1]
        self.lengths, self.published, self.weights = self.lengths[:start], self.published[:start], self.weights[:start]
        self.source_codes, self.article_codes = self.source_codes[:start], self.article_codes[:start]
        sources, articles = self._code_counts[first - 1] if first else (0, 0)
        del self._code_counts[first:]
        for index, keep in ((self.source_index, sources), (self.article_index, articles)):
            while len(index) > keep:  # codes are in order of first appearance: the newest codes go
                index.popitem()

    def _merge_tail(self) -> None:
        """Merge the newest segments while they are comparable in size (see `MERGE_FACTOR` and `MERGE_SHARE`)."""
        limit = max(MERGE_SHARE * len(self.live), MERGE_FLOOR)
        first = len(self.segments) - 1
        rows = self.segments[first].rows if self.segments else 0
        while first > 0:
            before = self.segments[first - 1].rows
            if rows * MERGE_FACTOR < before or rows + before > limit:
                break
            first, rows = first - 1, rows + before
        if first < len(self.segments) - 1:
            self._merge(first)

    def _merge(self, first: int) -> None:
        """Merge the segments from index `first` on into one, dropping their deleted rows."""
        if len(self.segments) - first < 1 or (len(self.segments) - first == 1 and self.live.all()):
            return
        tail = self.segments[first:]
        start = int(self._offsets[first])
        live_tail = [
            self.live[int(self._offsets[first + i]) : int(self._offsets[first + i + 1])] for i in range(len(tail))
        ]
        merged = merge_segments(tail, live_tail, len(self.terms))
        self._truncate_rows(first)
        self.segments = [*self.segments[:first], *([merged] if merged.rows else [])]
        self.live = np.concatenate([self.live[:start], np.ones(merged.rows, dtype=bool)])
        if merged.rows:
            self._append_rows(merged)

    # -- disk ------------------------------------------------------------------------------------

    def _load(self) -> None:
        """Load the saved state if it is of this format, of this store and whole; else log why and stay empty."""
        assert self.folder is not None
        try:
            with self.folder.locked(exclusive=False):
                manifest = self.folder.manifest()
                if manifest is None:
                    return
                self._load_manifest(manifest)
        except Exception as exc:  # a damaged or outdated index is a cache miss, not an error
            reason = str(exc) if isinstance(exc, Unusable) else f"unreadable ({type(exc).__name__}: {exc})"
            log.warning("lexical index at %s is %s: rebuilding it", self.folder.path, reason)
            self._reset()
            self.generation = -1
            self._replace = True

    def _load_manifest(self, manifest: dict[str, Any]) -> None:
        assert self.folder is not None
        if manifest.get("format") != FORMAT:
            raise Unusable(f"of format {manifest.get('format')!r}, not {FORMAT}")
        if manifest.get("store_id") != self.store.store_id():
            raise Unusable("of another store")
        segments = [
            self.folder.read_segment(name, rows)
            for name, rows in zip(manifest["segments"], manifest["rows"], strict=True)
        ]
        deleted = np.load(self.folder.path / manifest["deleted"])
        self._reset()
        self.segments = segments
        for segment in segments:
            self.terms.extend(segment.new_terms)
            if segment.n_terms != len(self.terms):
                raise Unusable(
                    f"unreadable (segment {segment.name} counts {segment.n_terms} terms, not {len(self.terms)})"
                )
        self.vocabulary = {term: i for i, term in enumerate(self.terms)}
        total = sum(segment.rows for segment in segments)
        if len(self.vocabulary) != len(self.terms) or (len(deleted) and int(deleted.max()) >= total):
            raise Unusable("unreadable (its vocabulary or tombstones do not fit its segments)")
        self.live = np.ones(total, dtype=bool)
        self.live[deleted] = False
        self._derive()
        self._df = np.zeros(len(self.terms), dtype=np.int64)
        for segment, start, end in zip(segments, self._offsets[:-1], self._offsets[1:], strict=True):
            self._df += segment.document_frequency(self.live[start:end], len(self.terms))
        self.generation = int(manifest["generation"])
        self._applied = set(manifest.get("applied", []))
        self._base = str(manifest["id"])

    def _save(self, force: bool = False) -> None:
        """Write new segments and a new manifest, unless another process saved a state this one does not extend."""
        if self.folder is None:
            return
        try:
            with self.folder.locked(exclusive=True):
                try:
                    current = self.folder.manifest()
                except ValueError:  # damaged: replaced below
                    current = None
                current_id = str(current.get("id", "")) if current else ""
                current_generation = int(current.get("generation", -1)) if current else -1
                stale = self._replace or force or current_generation < self.generation
                if current_id != self._base and not stale:
                    return  # someone else saved as new a state: theirs serves the next process as well
                # Segments are immutable and uniquely named: one already in the folder is ours (another writer
                # may have removed our older ones; memory-mapped, they still read, and are written again).
                unsaved = [s for s in self.segments if not s.on_disk or not (self.folder.path / s.name).is_dir()]
                for segment in unsaved:
                    self.folder.write_segment(segment)
                manifest_id = uuid.uuid4().hex
                manifest: dict[str, Any] = {
                    "format": FORMAT,
                    "id": manifest_id,
                    "store_id": self.store.store_id(),
                    "generation": self.generation,
                    "applied": sorted(self._applied),
                    "segments": [segment.name for segment in self.segments],
                    "rows": [segment.rows for segment in self.segments],
                }
                self.folder.write_manifest(manifest, np.flatnonzero(~self.live))
                self.folder.remove_unlisted({**manifest, "deleted": f"deleted-{manifest_id}.npy"})
                self._base = manifest_id
                self._replace = False
                # Serve the new segments from disk too: memory-mapped, they cost pages, not heap.
                for i, segment in enumerate(self.segments):
                    if not segment.on_disk:
                        self.segments[i] = self.folder.read_segment(segment.name, segment.rows)
        except OSError as exc:  # a read-only or full disk: the index still serves from memory
            log.warning("lexical index not saved at %s: %s", self.folder.path, exc)


def _first(rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n` rows of the highest positive scores, best first (ties: the lower row first), and their scores."""
    positive = scores > 0
    rows, scores = rows[positive], scores[positive]
    if len(rows) > n:
        top = np.argpartition(-scores, n - 1)[:n]
        rows, scores = rows[top], scores[top]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def _extend_codes(values: list[str], index: dict[str, int]) -> np.ndarray:
    """Each value's integer code, giving a value `index` does not have the next code (and adding it to `index`)."""
    return np.array([index.setdefault(value, len(index)) for value in values], dtype=np.int32)
