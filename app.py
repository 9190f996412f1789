"""Dossier's chat and HTTP API on http://127.0.0.1:7860: `python app.py [--host H] [--port P] [--store DIR]`.

An empty store first gets the demo corpus (examples/articles), so `make run` works on a fresh clone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from assistant.api import DEMO_CORPUS, serve
from assistant.errors import DossierError
from assistant.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=7860, help="Port (default 7860).")
    parser.add_argument("--store", type=Path, default=None, help="Store folder (overrides DOSSIER_STORE).")
    args = parser.parse_args(argv)
    try:
        settings = Settings().with_overrides(**({"store": args.store, "chroma_url": ""} if args.store else {}))
        serve(settings, args.host, args.port, demo=DEMO_CORPUS)
    except DossierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
