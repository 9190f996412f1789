"""The persisted lexical index: full rebuild against a one-article update, cold load, and a process's memory.

Works on a copy of `--store` (made in a temporary folder; the store given is never written). Rounds:
- rebuild: a `LexicalIndex` with nothing on disk builds from every current chunk (what every process
  paid before the index was kept on disk);
- update: one new article is ingested, and the index that was up to date applies it (`refresh`);
- cold load: a new process opens the store and loads the saved index (no rebuild), timed inside it
  after imports, with its RSS; the same process shape doing a full in-memory rebuild is the comparison.
Prints a table and writes bench/results/lexical.json.

    .venv/bin/python bench/lexical.py --store /work/stores/squad2 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.lexical import LexicalIndex  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from assistant.store import Store  # noqa: E402

ARTICLE = """title: Bench article {n} on the Quorvath glacier
date: 2024-06-03
source: Bench Notes

The Quorvath glacier retreated {n} metres last year, survey teams said. {filler}
"""
CHILD = """
import json, os, sys, time
from assistant.lexical import LexicalIndex
from assistant.settings import Settings
from assistant.store import Store

store = Store.from_settings(Settings(store=sys.argv[1]))
index = LexicalIndex(store)
if sys.argv[2] == "rebuild":
    index.folder = None  # nothing loaded or saved: everything built in memory, as before the index was kept
started = time.perf_counter()
index.refresh()
seconds = time.perf_counter() - started
rss = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:")][0]
print(json.dumps({"seconds": seconds, "rss_mb": rss / 1024, "chunks": index.size, "segments": len(index.segments)}))
"""


def child(store: Path, mode: str) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(store), mode], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(store_path: Path, temporary: Path, rounds: int) -> dict[str, Any]:
    """The rounds above on the embedded store at `store_path`, which is written to (pass a copy); scratch in `temporary`.

    Shared with bench/scale.py, which runs them on a synthetic store.
    """
    from ingest.pipeline import ingest_paths

    store = Store.from_settings(Settings(store=store_path))
    rebuilds = []
    for round_ in range(rounds):
        index = LexicalIndex(store, folder=temporary / f"rebuild-{round_}")
        started = time.perf_counter()
        index.refresh()
        rebuilds.append(time.perf_counter() - started)
        shutil.rmtree(temporary / f"rebuild-{round_}", ignore_errors=True)
    chunks = index.size

    live = LexicalIndex(store)  # the index kept beside the store, as a serving process has it
    live.refresh()
    updates = []
    for round_ in range(rounds):
        # A name and text of this run's own: on a store kept from an earlier run, the article is new again.
        tag = f"{os.getpid()}-{round_}"
        article = temporary / f"bench-{tag}.txt"
        article.write_text(ARTICLE.format(n=tag, filler="Meltwater rose. " * 40), encoding="utf-8")
        ingest_paths([article], store)
        started = time.perf_counter()
        live.refresh()
        updates.append(time.perf_counter() - started)
    store.close()

    loads = [child(store_path, "load") for _ in range(rounds)]
    in_memory = [child(store_path, "rebuild") for _ in range(rounds)]
    rebuild = statistics.median(rebuilds)
    update = statistics.median(updates)
    return {
        "chunks": chunks,
        "rounds": rounds,
        "full_rebuild_s": rebuild,
        "one_article_update_s": update,
        "update_over_rebuild": update / rebuild,
        "cold_load_s": statistics.median(load["seconds"] for load in loads),
        "cold_load_segments": loads[-1]["segments"],
        "cold_load_rss_mb": statistics.median(load["rss_mb"] for load in loads),
        "rebuild_process_s": statistics.median(run["seconds"] for run in in_memory),
        "rebuild_process_rss_mb": statistics.median(run["rss_mb"] for run in in_memory),
    }


def table(result: dict[str, Any]) -> str:
    """`result` as aligned `key  value` lines."""
    width = max(len(key) for key in result)
    lines = []
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="an ingested embedded store (copied, not written)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dossier-lexical-bench-") as temporary:
        copy = Path(temporary) / "store"
        shutil.copytree(args.store, copy, ignore=shutil.ignore_patterns("lexical"))
        result = {"store": str(args.store), **measure(copy, Path(temporary), args.rounds)}
    print(table(result))
    out = ROOT / "bench" / "results" / "lexical.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
