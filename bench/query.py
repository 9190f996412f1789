"""Query latency: retrieval alone and the full extractive answer, p50/p95.

Two stores: (1) a real one, e.g. realtimeqa-dev ingested with `dossier ingest` (pass --store;
questions from its questions.jsonl, each asked with its own `asked_on`), and (2) a synthetic store
of --synthetic chunks (random unit vectors and random words, written straight to Chroma; no model
time) for retrieval at scale, with and without filters. Prints a table, writes bench/results/query.json.

    .venv/bin/dossier ingest ../shared/eval/realtimeqa-dev/articles.jsonl --store /tmp/rtqa
    .venv/bin/python bench/query.py --store /tmp/rtqa --synthetic 100000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT.parent / "shared" / "eval" / "realtimeqa-dev" / "questions.jsonl"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(values), "p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(pick(0.95), 2)}


def real_store(
    store_dir: Path,
    questions: Path,
    rounds: int,
    encoder: str = "onnx",
    word_cache: bool = True,
    shortlist: int | None = None,
) -> dict[str, dict[str, float]]:
    from assistant.chain import Assistant
    from assistant.settings import Settings

    settings = Settings(store=store_dir)
    assistant = Assistant.from_settings(
        settings if shortlist is None else settings.model_copy(update={"reader_shortlist": shortlist})
    )
    if not word_cache:  # as before the cache: every word not seen by this process is encoded for the question
        assistant.extractive.word_vectors = None
    if encoder == "torch":
        assistant.store.embedder.warm()  # what a process that has ingested uses
    elif encoder == "numpy":  # the forward pass in numpy, as before ONNX Runtime ran it
        from assistant.embeddings import resolve_model_path
        from assistant.encoder import NumpyEncoder

        assistant.store.embedder._numpy = NumpyEncoder.load(resolve_model_path(settings.embedding_model))
    items = [json.loads(line) for line in questions.read_text().splitlines() if line.strip()]
    assistant.ask(items[0]["question"], as_of=items[0].get("asked_on"))  # warm-up: index build, model load
    retrieval, first_answers, repeat_answers = [], [], []
    for round_ in range(rounds):
        for item in items:
            as_of = date.fromisoformat(item["asked_on"]) if item.get("asked_on") else None
            # A fresh question text each round, so the query-embedding cache does not flatter the numbers.
            question = item["question"] if round_ == 0 else f"{item['question']} ({round_})"
            started = time.perf_counter()
            assistant.retriever.retrieve(question, 5, as_of=as_of)
            retrieval.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            assistant.ask(question + " ", as_of=as_of)
            # The first round encodes the candidate sentences; later rounds find them in the answerer's cache.
            (first_answers if round_ == 0 else repeat_answers).append((time.perf_counter() - started) * 1000)
    results = {"retrieval": percentiles(retrieval), "ask_extractive": percentiles(first_answers)}
    if repeat_answers:
        results["ask_extractive_seen_sentences"] = percentiles(repeat_answers)
    return {**results, "chunks": assistant.store.chunk_count()}


def synthetic_store(n: int, queries: int) -> dict[str, dict[str, float]]:
    from assistant.embeddings import Embedder
    from assistant.filters import Filters
    from assistant.retrieval import Retriever
    from assistant.settings import Settings
    from assistant.store import Store
    from ingest.chunking import chunk_article
    from ingest.models import Article

    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(30000)] + ["Raisi", "36,000", "Hamas", "ministry", "figures", "Gaza"]
    sources = ["Harbor Daily", "Dossier Wire", "The Meridian Post", "Coastline Courier"]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(store=Path(tmp) / "store")
        embedder = Embedder()
        store = Store.from_settings(settings, embedder=embedder)
        started = time.perf_counter()
        per_article = 10
        batch = []
        for a in range(n // per_article):
            text = "\n\n".join(" ".join(rng.choices(vocabulary, k=120)) + "." for _ in range(per_article))
            day = date(2022, 1, 1) + timedelta(days=rng.randrange(365))
            article = Article(
                id=f"synthetic-{a}",
                title=f"Synthetic {a}",
                text=text,
                source=rng.choice(sources),
                published=day.isoformat(),
            )
            chunks = chunk_article(article, size=len(text) // per_article + 5)
            batch.append((article, f"h{a}", chunks))
            if len(batch) >= 200:
                vectors = _random_unit(sum(len(c) for _, _, c in batch), rng)
                store.write(batch, vectors=vectors)
                batch = []
        if batch:
            store.write(batch, vectors=_random_unit(sum(len(c) for _, _, c in batch), rng))
        build = time.perf_counter() - started
        retriever = Retriever(store)
        retriever.retrieve("warm-up Hamas figures", 5)
        plain, filtered = [], []
        for i in range(queries):
            question = (
                f"What figures did the ministry report about w{rng.randrange(30000)} and w{rng.randrange(30000)}? {i}"
            )
            started = time.perf_counter()
            retriever.retrieve(question, 5)
            plain.append((time.perf_counter() - started) * 1000)
            filters = Filters(sources=(rng.choice(sources),), since=date(2022, 3, 1), until=date(2022, 9, 30))
            started = time.perf_counter()
            retriever.retrieve(question + " filtered", 5, filters=filters, as_of=date(2022, 10, 1))
            filtered.append((time.perf_counter() - started) * 1000)
        return {
            "chunks": store.chunk_count(),
            "build_seconds": round(build, 1),
            "retrieval": percentiles(plain),
            "retrieval_filtered": percentiles(filtered),
        }


def _random_unit(count: int, rng: random.Random) -> np.ndarray:
    generator = np.random.default_rng(rng.randrange(1 << 30))
    vectors = generator.standard_normal((count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="An ingested store to query (e.g. realtimeqa-dev).")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--synthetic", type=int, default=100_000, help="Chunks in the synthetic store (0 = skip).")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--encoder",
        choices=["onnx", "numpy", "torch", "all"],
        nargs="+",
        default=["all"],
        help="Which forward pass embeds at query time (onnx: what Dossier uses; several are measured in turn).",
    )
    parser.add_argument(
        "--word-cache",
        choices=["on", "off", "both"],
        default="on",
        help="Read word vectors from the store's cache (on), encode them per question as before it (off), or both "
        "(off first, then on; each in a fresh Assistant, so neither finds the other's vectors in memory).",
    )
    parser.add_argument(
        "--shortlist",
        type=int,
        nargs="+",
        default=[None],
        help="Candidate sentences the reader encodes (reader_shortlist; 0: all); several values are measured in turn",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "query.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: dict[str, object] = {"load_average": os.getloadavg()[0]}
    if args.store:
        for encoder in ["onnx", "numpy", "torch"] if args.encoder == ["all"] else args.encoder:
            for words in ["off", "on"] if args.word_cache == "both" else [args.word_cache]:
                for shortlist in args.shortlist:
                    key = f"real_{encoder}" + ("" if args.word_cache != "both" else f"_word_cache_{words}")
                    key += "" if shortlist is None else f"_shortlist_{shortlist}"
                    results[key] = real_store(
                        args.store, args.questions, args.rounds, encoder, words == "on", shortlist
                    )
                    print(f"{key}:", json.dumps(results[key]), file=sys.stderr)
    if args.synthetic:
        results["synthetic"] = synthetic_store(args.synthetic, args.queries)
        print("synthetic:", json.dumps(results["synthetic"]), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
