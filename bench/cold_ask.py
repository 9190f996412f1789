"""Cold `dossier ask`: a new process per question, against `python -c "import chromadb"` in the same run.

Each round runs, alternately, the import alone and a whole `dossier ask` (start, open the store, load what
answering needs, answer, print), so both see the same machine load; the ratio of medians is the figure.
Also reports whether the ask process imported torch. Writes bench/results/cold_ask.json.

    .venv/bin/python bench/cold_ask.py --store /tmp/rtqa --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What figures did Hamas report?",
    "Which country won the most medals?",
    "When did the rocket launch?",
    "What did the central bank decide about interest rates?",
    "Who was elected president?",
]
ASK = (
    "import sys\n"
    "from assistant.cli import cli\n"
    "try:\n"
    "    cli(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('torch' in sys.modules, file=sys.stderr)\n"
)


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="an ingested store (e.g. realtimeqa-dev)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    imports, asks, torch_loaded = [], [], []
    for round_ in range(args.rounds):
        seconds, _ = timed([sys.executable, "-c", "import chromadb"])
        imports.append(seconds)
        question = QUESTIONS[round_ % len(QUESTIONS)]
        seconds, done = timed([sys.executable, "-c", ASK, "ask", "--store", str(args.store), question])
        asks.append(seconds)
        torch_loaded.append(done.stderr.strip().splitlines()[-1] == "True")
        print(f"round {round_ + 1}: import chromadb {imports[-1]:.2f} s, dossier ask {asks[-1]:.2f} s", flush=True)

    result = {
        "store": str(args.store),
        "rounds": args.rounds,
        "import_chromadb_s": round(statistics.median(imports), 2),
        "dossier_ask_s": round(statistics.median(asks), 2),
        "ratio": round(statistics.median(asks) / statistics.median(imports), 2),
        "torch_imported": any(torch_loaded),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "cold_ask.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
