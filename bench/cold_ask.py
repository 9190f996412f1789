"""Cold `dossier ask`: a new process per question, against `python -c "import chromadb"` in the same run.

Each round runs, alternately, the import alone and a whole `dossier ask` (start, open the store, load what
answering needs, answer, print), so both see the same machine load; the ratio of medians is the figure.
Also reports whether the ask process imported torch. Writes bench/results/cold_ask.json.

With `--server`, a `dossier serve` runs on the store (started, then asked once so it has loaded what it
needs), and each round also times `dossier ask` answered through it (`assistant/serving.py`); the in-process
ask is then run with `--local`.

    .venv/bin/python bench/cold_ask.py --store /tmp/rtqa --rounds 5
    .venv/bin/python bench/cold_ask.py --store /tmp/rtqa --rounds 5 --server
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx

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


@contextmanager
def running_server(store: Path, port: int) -> Iterator[str]:
    """`dossier serve` on `store` in its own process, answering (one question asked) before the block runs."""
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "assistant.cli", "serve", "--no-demo", "--port", str(port), "--store", str(store)]
    process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.post(f"{url}/api/ask", json={"question": QUESTIONS[0]}, timeout=300).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("dossier serve did not start") from None
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="an ingested store (e.g. realtimeqa-dev)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", action="store_true", help="also time asks answered by a running dossier serve")
    parser.add_argument("--port", type=int, default=7871, help="the server's port on 127.0.0.1 (with --server)")
    args = parser.parse_args()

    with running_server(args.store, args.port) if args.server else nullcontext():
        result = measure(args.store, args.rounds, args.server)
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "cold_ask.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def measure(store: Path, rounds: int, server: bool) -> dict[str, object]:
    imports, asks, served, torch_loaded = [], [], [], []
    for round_ in range(rounds):
        seconds, _ = timed([sys.executable, "-c", "import chromadb"])
        imports.append(seconds)
        question = QUESTIONS[round_ % len(QUESTIONS)]
        ask = [sys.executable, "-c", ASK, "ask", "--store", str(store), question]
        seconds, done = timed([*ask, "--local"])
        asks.append(seconds)
        torch_loaded.append(done.stderr.strip().splitlines()[-1] == "True")
        line = f"round {round_ + 1}: import chromadb {imports[-1]:.2f} s, dossier ask {asks[-1]:.2f} s"
        if server:
            seconds, done = timed(ask)
            if "answered by the server" not in done.stderr:
                raise SystemExit(f"the ask was not answered by the server:\n{done.stderr[-2000:]}")
            served.append(seconds)
            line += f", through the server {served[-1]:.2f} s"
        print(line, flush=True)
    result: dict[str, object] = {
        "store": str(store),
        "rounds": rounds,
        "import_chromadb_s": round(statistics.median(imports), 2),
        "dossier_ask_s": round(statistics.median(asks), 2),
        "ratio": round(statistics.median(asks) / statistics.median(imports), 2),
        "torch_imported": any(torch_loaded),
    }
    if served:
        result["dossier_ask_through_server_s"] = round(statistics.median(served), 2)
        result["ratio_through_server"] = round(statistics.median(served) / statistics.median(imports), 2)
    result["load_average"] = os.getloadavg()
    return result


if __name__ == "__main__":
    main()
