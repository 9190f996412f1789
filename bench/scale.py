"""Dossier on a large synthetic store: the lexical index's update against a rebuild, a write reaching a server, memory.

The store is made by bench/synthetic.py (made-up text, random vectors, written through `Store`), in `--store`
(kept, and topped up to `--chunks` when it holds fewer) or in a temporary folder. With `--chroma` a `chroma run
--path` on 127.0.0.1 serves that folder and every process goes through it. Phases (`--phases`, in this order):

- build: the store topped up to `--chunks` chunks, timed (chunks per second).
- lexical (embedded store only): bench/lexical.py's rounds on the store: a full rebuild of the lexical index
  against a one-article update applied by an index that was up to date, then a new process's cold load from
  the persisted index (its RSS) against the same process rebuilding the index in memory.
- visibility: a real `dossier serve` on the store; `--rounds` times `dossier ingest` of one new article by another
  process (a real CLI process, which loads the model to embed it), then /api/ask until an answer cites it
  (bench/writers.py's round): seconds after the ingest exited. RSS of the server after its first answer and at
  the end.
- retrieval: the project's hybrid retrieval (`Retriever.retrieve`, questions made of the store's words, so the
  numpy encoder embeds each) in this process, `--queries` times: p50/p95 of the whole call and of it without
  the question's embedding, and of each part `Retriever.retrieve` times; RSS of this process and (with `--chroma`)
  of the Chroma server.

Prints a table and writes bench/results/scale-CHUNKS[-chroma].json with the machine's load average.

    PYTHONPATH=. .venv/bin/python bench/scale.py --chunks 100000 --store /tmp/scale-100k
    PYTHONPATH=. .venv/bin/python bench/scale.py --chunks 300000 --chroma --phases build,retrieval
    PYTHONPATH=. .venv/bin/python bench/scale.py --chunks 300000 --store DIR --chroma --chroma-port 8765 --phases retrieval
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import lexical  # noqa: E402  (bench/lexical.py)
import synthetic  # noqa: E402
import writers  # noqa: E402

from assistant.settings import Settings  # noqa: E402
from assistant.store import Store  # noqa: E402

PHASES = ("build", "lexical", "visibility", "retrieval")


def build_phase(settings: Settings, chunks: int) -> dict[str, Any]:
    store = Store.from_settings(settings)
    have = store.chunk_count()
    result: dict[str, Any] = {"chunks_before": have}
    if have < chunks:

        def progress(done: int, seconds: float) -> None:
            print(f"  built {have + done:>9} chunks  {seconds:7.1f} s  {done / seconds:6.0f}/s", flush=True)

        built = synthetic.build(store, chunks - have, progress=progress)
        result.update(built_chunks=built["chunks"], build_s=built["seconds"], build_chunks_per_s=built["chunks_per_s"])
    result["chunks"] = store.chunk_count()
    store.close()
    return result


def visibility_phase(target: writers.Target, scratch: Path, rounds: int) -> dict[str, Any]:
    """A real `dossier serve`, warmed by one question; then bench/writers.py's visibility rounds against it."""
    server, url = writers.start_server(target, scratch / "serve.log")
    try:
        started = time.monotonic()
        writers.ask(url, "What did the council say about the harbour?")
        first_answer = time.monotonic() - started
        rss_first = writers.rss_mb(server.pid)
        seen = writers.visibility(target, [url], scratch / "visible", rounds, tag=f"{os.getpid()}x")
        return {
            "serve_first_answer_s": first_answer,
            "serve_rss_first_answer_mb": rss_first,
            "serve_rss_end_mb": writers.rss_mb(server.pid),
            **{f"visible_{key}": value for key, value in seen.items()},
        }
    finally:
        server.terminate()
        server.wait(timeout=60)


def retrieval_phase(settings: Settings, queries: int, chroma: subprocess.Popen[bytes] | None) -> dict[str, Any]:
    from assistant.retrieval import Retriever

    retriever = Retriever(Store.from_settings(settings))
    writer = synthetic.Writer(seed=99)
    started = time.perf_counter()
    retriever.retrieve("warm-up: " + writer.text(6), 5)  # loads the index and the encoder
    warm = time.perf_counter() - started
    peak_after_warm_up = own_rss_mb("VmHWM")  # with no index saved yet, the warm-up's rebuild is this peak
    whole, without_embedding = [], []
    parts: dict[str, list[float]] = {}
    for _ in range(queries):
        timings = retriever.retrieve(f"What did {writer.text(5).rstrip('.')} say?", 5).timings
        whole.append(timings["retrieve_ms"])
        without_embedding.append(timings["retrieve_ms"] - timings["embed_ms"])
        for key, value in timings.items():
            parts.setdefault(key, []).append(value)
    result = {
        **{f"retrieval_part_{key}_p50": statistics.median(values) for key, values in parts.items()},
        "retrieval_warm_up_s": warm,
        "retrieval_warm_up_peak_rss_mb": peak_after_warm_up,
        "retrieval_queries": queries,
        "retrieval_p50_ms": statistics.median(whole),
        "retrieval_p95_ms": percentile(whole, 0.95),
        "retrieval_without_embedding_p50_ms": statistics.median(without_embedding),
        "retrieval_client_rss_mb": own_rss_mb(),
        "lexical_segments": len(retriever.lexical.segments),
    }
    if chroma is not None:
        result["chroma_server_rss_mb"] = writers.rss_mb(chroma.pid)
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def own_rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS), or at its peak so far (VmHWM)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000, help="synthetic chunks in the store")
    parser.add_argument("--store", type=Path, help="store folder, kept and reused (default: a temporary one)")
    parser.add_argument("--chroma", action="store_true", help="serve the store with `chroma run` on 127.0.0.1")
    parser.add_argument(
        "--chroma-port",
        type=int,
        default=0,
        help="its port (default: a free one); a process's lexical index of a server's store is kept per URL, so a "
        "later run on the same port loads the index an earlier one saved",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--rounds", type=int, default=3, help="lexical and visibility rounds")
    parser.add_argument("--queries", type=int, default=50, help="retrieval questions")
    args = parser.parse_args()
    phases = [phase for phase in args.phases.split(",") if phase]
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}: use {', '.join(PHASES)}")
    os.environ["HF_HUB_OFFLINE"] = "1"
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": os.getloadavg(),
    }
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dossier-scale-")))
        folder = args.store or scratch / "store"
        folder.mkdir(parents=True, exist_ok=True)
        chroma = None
        target = writers.Target(folder)
        if args.chroma:
            chroma, url = writers.start_chroma(folder, scratch / "chroma.log", args.chroma_port)
            stack.callback(chroma.terminate)
            target = writers.Target(folder, url)
        settings = Settings(store=folder, chroma_url=target.chroma_url)
        for phase in phases:
            print(f"{phase} ...", flush=True)
            started, before = time.perf_counter(), set(result)
            if phase == "build":
                result.update(build_phase(settings, args.chunks))
            elif phase == "lexical" and not args.chroma:
                work = scratch / "lexical"
                work.mkdir(exist_ok=True)
                result.update(
                    {f"lexical_{key}": value for key, value in lexical.measure(folder, work, args.rounds).items()}
                )
            elif phase == "visibility":
                result.update(visibility_phase(target, scratch, args.rounds))
            elif phase == "retrieval":
                result.update(retrieval_phase(settings, args.queries, chroma))
            result[f"{phase}_phase_s"] = time.perf_counter() - started
            print(lexical.table({key: value for key, value in result.items() if key not in before}), flush=True)
    result["load_average_end"] = os.getloadavg()
    print(lexical.table(result))
    out = ROOT / "bench" / "results" / f"scale-{args.chunks}{'-chroma' if args.chroma else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
