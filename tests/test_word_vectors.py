"""Vectors the reader reuses: sentence vectors written at ingest, single words' vectors kept on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant.answer import ExtractiveAnswerer
from assistant.embeddings import Embedder
from assistant.models import Passage
from assistant.settings import Settings
from assistant.store import SENTENCE_VECTORS, Store
from assistant.word_vectors import WordVectors, cache_path
from ingest.pipeline import ingest_paths
from ingest.sentences import sentence_spans

REPO = Path(__file__).resolve().parents[1]


class Counting:
    """The real model's `encode`, counting the words it is asked for."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.asked: list[str] = []

    def __call__(self, words: list[str]) -> np.ndarray:
        self.asked += words
        return self.embedder.encode(words)


def test_a_word_is_encoded_once_then_read_back_by_another_instance(tmp_path: Path, embedder: Embedder) -> None:
    path = cache_path(tmp_path, embedder.model_name)
    first = Counting(embedder)
    got = WordVectors(path, first).lookup(["satellite", "weighs", "satellite"])
    assert first.asked == ["satellite", "weighs"]

    second = Counting(embedder)
    again = WordVectors(path, second).lookup(["weighs", "satellite", "orbit"])
    assert second.asked == ["orbit"]  # the other two came from the file
    expected = embedder.encode(["satellite", "weighs"])
    for word, vector in zip(["satellite", "weighs"], expected, strict=True):
        assert np.allclose(got[word], vector, atol=2e-3)
        assert np.array_equal(got[word], again[word])  # rounded as stored, whichever way it came


def test_an_unusable_cache_file_costs_time_not_answers(tmp_path: Path, embedder: Embedder) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    counting = Counting(embedder)
    vectors = WordVectors(cache_path(blocked, embedder.model_name), counting)
    assert set(vectors.lookup(["orbit", "launch"])) == {"orbit", "launch"}
    damaged = cache_path(tmp_path, "other-model")
    damaged.write_bytes(b"this is not a SQLite database" * 100)
    assert set(WordVectors(damaged, counting).lookup(["orbit"])) == {"orbit"}


def test_ingest_writes_sentence_vectors_pooled_from_the_chunk(settings: Settings, embedder: Embedder) -> None:
    store = Store.from_settings(settings, embedder=embedder)
    ingest_paths([REPO / "examples" / "articles"], store)
    chunks = store.current_chunks()[:4]
    stored = store.sentence_vectors([chunk.passage.chunk_id for chunk in chunks])
    for chunk in chunks:
        passage = chunk.passage
        spans = sentence_spans(passage.text)
        keys = [(passage.chunk_id, start, end) for start, end in spans]
        assert keys and all(key in stored for key in keys)
        # In context, so not the sentence encoded alone, but nearer to it than to its neighbours.
        alone = embedder.encode([passage.text[start:end] for start, end in spans])
        pooled = np.stack([stored[key] for key in keys])
        assert np.allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-3)
        own = np.argmax(pooled @ alone.T, axis=1) == np.arange(len(spans))
        assert own.mean() >= 0.75
        assert not np.allclose(np.sum(alone * pooled, axis=1), 1.0, atol=1e-3)


def test_ingest_leaves_its_words_on_disk_for_a_new_process(settings: Settings, embedder: Embedder) -> None:
    store = Store.from_settings(settings, embedder=embedder)
    ingest_paths([REPO / "examples" / "articles"], store)
    script = (
        "import sys, numpy as np\n"
        "from assistant.word_vectors import WordVectors, cache_path\n"
        "asked = []\n"
        "def encode(words):\n"
        "    asked.extend(words)\n"
        "    return np.zeros((len(words), 384), dtype=np.float32)\n"
        f"vectors = WordVectors(cache_path(__import__('pathlib').Path({str(settings.store)!r}), {embedder.model_name!r}), encode)\n"
        "vectors.lookup(['satellite', 'orbit', 'kilograms'])\n"
        "print(len(asked))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "0"


def test_the_answerer_ranks_by_the_stored_sentence_vectors(embedder: Embedder) -> None:
    text = "The bridge cost 40 million crowns. The mayor opened it on Monday."
    passage = Passage("bridge#v#0", "bridge", text, 0, len(text), title="A bridge")
    spans = sentence_spans(text)
    question = "When was the bridge opened?"
    query = embedder.encode([question])[0]
    plain = ExtractiveAnswerer(embed=embedder.encode_cached).rank_sentences(question, [passage], query)
    # A store whose vector for the cost sentence is the question's own: the cost sentence must now rank first.
    planted = {("bridge#v#0", *spans[0]): query, ("bridge#v#0", *spans[1]): -query}
    reading = ExtractiveAnswerer(embed=embedder.encode_cached, stored_vectors=lambda ids: planted)
    ranked = reading.rank_sentences(question, [passage], query)
    assert plain[0].text.startswith("The mayor")
    assert ranked[0].features is not None and ranked[0].features.semantic == pytest.approx(1.0, abs=1e-5)
    assert ranked[0].text.startswith("The bridge cost")


def test_damaged_sentence_vectors_are_skipped(settings: Settings, embedder: Embedder) -> None:
    store = Store.from_settings(settings, embedder=embedder)
    ingest_paths([REPO / "examples" / "articles"], store)
    chunk = store.current_chunks()[0].passage.chunk_id
    got = store._chunks.get(ids=[chunk], include=["metadatas"])
    store._chunks.update(ids=[chunk], metadatas=[{**got["metadatas"][0], SENTENCE_VECTORS: "not base64 %%%"}])
    assert store.sentence_vectors([chunk]) == {}
