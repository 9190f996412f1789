"""The word vector cache: single words' vectors computed once (at ingest or first use) and kept on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from assistant.embeddings import Embedder
from assistant.settings import Settings
from assistant.store import Store
from assistant.word_vectors import WordVectors, cache_path
from ingest.pipeline import ingest_paths

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
