"""HTTP load on /api/ask: N concurrent clients for a bounded time; prints a table and writes bench/results/load.json.

    .venv/bin/python bench/load.py                         # 20 clients, 60 s, against a fresh server on the demo corpus
    .venv/bin/python bench/load.py --clients 5 --seconds 10
    .venv/bin/python bench/load.py --url http://127.0.0.1:7860 --token TOKEN

Without --url it starts `dossier serve` in a subprocess (its own process, so the clients do not share its GIL)
on a free port of 127.0.0.1 with a temporary store holding examples/articles. Questions rotate through
examples/questions.jsonl (answerable and unanswerable ones). An error is any non-200 answer or failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def load_questions(path: Path) -> list[str]:
    questions = [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not questions:
        raise SystemExit(f"no questions in {path}")
    return questions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path, llm: str) -> tuple[subprocess.Popen[bytes], str]:
    """`dossier serve` on a free port with a fresh store (the demo corpus is ingested at start)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOSSIER_")}
    env.update(
        HF_HUB_OFFLINE="1", DOSSIER_LLM=llm, DOSSIER_UPLOAD_DIR=str(folder / "uploads"), DOSSIER_CONFIG=os.devnull
    )
    command = [
        sys.executable,
        "-m",
        "assistant.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--store",
        str(folder / "store"),
    ]
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}: see {folder / 'server.log'}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the server did not answer /api/health within 600 s")


async def client(
    number: int,
    http: httpx.AsyncClient,
    url: str,
    questions: list[str],
    stop_at: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    turn = number
    while time.perf_counter() < stop_at:
        question = questions[turn % len(questions)]
        turn += 1
        started = time.perf_counter()
        try:
            response = await http.post(f"{url}/api/ask", json={"question": question})
            if response.status_code == 200 and "text" in response.json():
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")


async def run(
    url: str, token: str, clients: int, seconds: float, questions: list[str], timeout: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as http:
        for question in questions[:3]:  # warm-up: first-query caches, the BM25 index
            (await http.post(f"{url}/api/ask", json={"question": question})).raise_for_status()
        latencies: list[float] = []
        errors: list[str] = []
        load_before = os.getloadavg()
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(n, http, url, questions, stop_at, latencies, errors) for n in range(clients)))
        elapsed = time.perf_counter() - started
        load_after = os.getloadavg()
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else 0.0

    return {
        "url": url,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "answers": len(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "answers_per_second": round(len(latencies) / elapsed, 2),
        "latency_ms": {
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "max": round(ordered[-1] * 1000, 1) if ordered else 0.0,
            "mean": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0.0,
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "questions": len(questions),
    }


def print_table(result: dict[str, Any]) -> None:
    latency = result["latency_ms"]
    rows = [
        ("clients", result["clients"]),
        ("duration (s)", result["seconds"]),
        ("answers", result["answers"]),
        ("errors", result["errors"]),
        ("answers / s", result["answers_per_second"]),
        ("p50 latency (ms)", latency["p50"]),
        ("p95 latency (ms)", latency["p95"]),
        ("p99 latency (ms)", latency["p99"]),
        ("max latency (ms)", latency["max"]),
        ("load average before", " ".join(map(str, result["load_average_before"]))),
        ("load average after", " ".join(map(str, result["load_average_after"]))),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"HTTP load on {result['url']}/api/ask ({result['cpus']} CPUs)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for example in result["error_examples"]:
        print(f"  error: {example}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20, help="Concurrent clients (default 20).")
    parser.add_argument("--seconds", type=float, default=60.0, help="How long to send questions (default 60).")
    parser.add_argument("--url", default="", help="A running Dossier; default: start one on the demo corpus.")
    parser.add_argument("--token", default="", help="Bearer token for a server with DOSSIER_API_TOKEN.")
    parser.add_argument(
        "--questions", type=Path, default=REPO / "examples" / "questions.jsonl", help="JSONL with a 'question' field."
    )
    parser.add_argument("--llm", default="extractive", help="Answerer of the started server (default extractive).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds before a request counts as an error.")
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args()

    questions = load_questions(args.questions)
    process = None
    with tempfile.TemporaryDirectory(prefix="dossier-load-") as folder:
        url = args.url.rstrip("/")
        try:
            if not url:
                print("starting dossier serve on the demo corpus ...", file=sys.stderr)
                process, url = start_server(Path(folder), args.llm)
            result = asyncio.run(run(url, args.token, args.clients, args.seconds, questions, args.timeout))
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    result["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
