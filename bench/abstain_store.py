"""The realtimeqa-abstain-dev store: a copy of the realtimeqa-dev store without the articles that set lacks.

realtimeqa-abstain-dev is realtimeqa-dev with the answers' articles removed for some questions. Ingesting its
articles.jsonl from scratch takes about half an hour; copying the realtimeqa-dev store and removing the
articles it does not hold (through `Library.remove`, as `dossier remove` does) takes seconds.

    .venv/bin/python bench/abstain_store.py /work/stores/rtqa /work/stores/rtqa-abstain
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from assistant.library import Library, StoredArticles
from assistant.settings import Settings
from assistant.store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"


def article_ids(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as lines:
        return {json.loads(line)["id"] for line in lines if line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the realtimeqa-dev store")
    parser.add_argument("target", type=Path, help="where the copy goes (replaced if it exists)")
    parser.add_argument("--eval", type=Path, default=SHARED, help="the folder holding both question sets")
    args = parser.parse_args()

    keep = article_ids(args.eval / "realtimeqa-abstain-dev" / "articles.jsonl")
    every = article_ids(args.eval / "realtimeqa-dev" / "articles.jsonl")
    shutil.rmtree(args.target, ignore_errors=True)
    shutil.copytree(args.source, args.target)
    settings = Settings(store=args.target, chroma_url="")
    library = Library(StoredArticles(Store.from_settings(settings), settings), settings)
    for article_id in sorted(every - keep):
        library.remove(article_id)
    print(f"{args.target}: removed {len(every - keep)} of {len(every)} articles")


if __name__ == "__main__":
    main()
