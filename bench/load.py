"""HTTP load on /api/ask: N concurrent clients for a bounded time; prints a table and writes bench/results/load.json.

    .venv/bin/python bench/load.py                         # 20 clients, 60 s per run, on a fresh demo-corpus server
    .venv/bin/python bench/load.py --store /work/stores/rtqa --questions ../shared/eval/realtimeqa-dev/questions.jsonl
    .venv/bin/python bench/load.py --store STORE --upload examples/articles/putin-gaza.txt   # p95 with and without
    .venv/bin/python bench/load.py --url http://127.0.0.1:7860 --token TOKEN --runs distinct

Two runs, one after the other (`--runs`):
- distinct: every question asked once. Questions come from `--questions` (default: every questions.jsonl
  under ../shared/eval/), de-duplicated and shuffled (`--seed`); when they run out the run ends early and
  says so, because a repeated question is answered from the assistant's caches and measures them instead.
- repeated: the 18 questions of examples/questions.jsonl in rotation, as this benchmark used to run: the
  serving path with warm caches.

With `--upload PATH` (a file, or a folder of files) the distinct run also uploads PATH through
/api/articles `--upload-at` seconds in, and reports p95 separately for the answers that overlapped the
upload and for those that did not.

Without --url it starts `dossier serve` in a subprocess (its own process, so the clients do not share its GIL)
on a free port of 127.0.0.1, with a temporary store: a copy of `--store` if given (uploads never touch the
original), else one holding examples/articles. An error is any non-200 answer or failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEV_SETS = REPO.parent / "shared" / "eval"
REPEATED = REPO / "examples" / "questions.jsonl"
WARM_UP = 3  # questions asked before a run: first-query caches, the BM25 index


def load_questions(paths: list[Path]) -> list[str]:
    """The questions of JSONL files (a 'question' field per line), de-duplicated, in file order."""
    questions: dict[str, None] = {}
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"no questions file {path}: pass one with --questions")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                questions[json.loads(line)["question"].strip()] = None
    if not questions:
        raise SystemExit(f"no questions in {', '.join(map(str, paths))}")
    return list(questions)


def default_question_files() -> list[Path]:
    return sorted(DEV_SETS.glob("*/questions.jsonl"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path, llm: str, store: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    """`dossier serve` on a free port with a copy of `store`, or a fresh store (the demo corpus is ingested at start)."""
    port = free_port()
    if store is not None:
        shutil.copytree(store, folder / "store")
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
        "--no-demo" if store is not None else "--demo",
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


class Questions:
    """The questions a run asks: each once (`distinct`, until they run out) or in rotation (`repeated`)."""

    def __init__(self, questions: list[str], distinct: bool) -> None:
        self.questions, self.distinct, self.asked = questions, distinct, 0

    def next(self) -> str | None:
        if self.distinct and self.asked >= len(self.questions):
            return None
        question = self.questions[self.asked % len(self.questions)]
        self.asked += 1
        return question


async def client(
    http: httpx.AsyncClient,
    url: str,
    questions: Questions,
    stop_at: float,
    answers: list[tuple[float, float]],
    errors: list[str],
) -> None:
    """Ask until `stop_at` or until the questions run out; each answer's (start, end) goes into `answers`."""
    while time.perf_counter() < stop_at and (question := questions.next()) is not None:
        started = time.perf_counter()
        try:
            response = await http.post(f"{url}/api/ask", json={"question": question})
            if response.status_code == 200 and "text" in response.json():
                answers.append((started, time.perf_counter()))
            else:
                errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")


async def upload(
    http: httpx.AsyncClient, url: str, paths: list[Path], delay: float, window: list[float]
) -> dict[str, Any]:
    """After `delay` seconds, send `paths` in one upload; `window` gets its (start, end)."""
    await asyncio.sleep(delay)
    files = [("files", (f"load-{int(time.time())}-{path.name}", path.read_bytes())) for path in paths]
    window.append(time.perf_counter())
    response = await http.post(f"{url}/api/articles", files=files, timeout=None)
    window.append(time.perf_counter())
    statuses = [f["status"] for f in response.json().get("files", [])] if response.status_code == 200 else []
    return {"status_code": response.status_code, "files": statuses, "seconds": round(window[1] - window[0], 2)}


def latency_ms(latencies: list[float]) -> dict[str, float | int]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else 0.0

    return {
        "answers": len(ordered),
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": round(ordered[-1] * 1000, 1) if ordered else 0.0,
        "mean": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0.0,
    }


async def run(
    url: str,
    token: str,
    clients: int,
    seconds: float,
    questions: Questions,
    timeout: float,
    uploads: list[Path] | None = None,
    upload_at: float = 0.0,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as http:
        for question in [q for q in (questions.next() for _ in range(WARM_UP)) if q]:
            (await http.post(f"{url}/api/ask", json={"question": question})).raise_for_status()
        answers: list[tuple[float, float]] = []
        errors: list[str] = []
        window: list[float] = []
        load_before = os.getloadavg()
        started = time.perf_counter()
        stop_at = started + seconds
        asking = [client(http, url, questions, stop_at, answers, errors) for _ in range(clients)]
        uploading = [upload(http, url, uploads, upload_at, window)] if uploads else []
        done = await asyncio.gather(*asking, *uploading)
        elapsed = time.perf_counter() - started
        load_after = os.getloadavg()
    result: dict[str, Any] = {
        "url": url,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "questions": len(questions.questions),
        "distinct": questions.distinct,
        "ran_out_of_questions": questions.distinct and questions.asked >= len(questions.questions),
        "answers": len(answers),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "answers_per_second": round(len(answers) / elapsed, 2),
        "latency_ms": latency_ms([end - start for start, end in answers]),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    if uploads:

        def overlaps(answer: tuple[float, float]) -> bool:
            return len(window) == 2 and answer[0] < window[1] and answer[1] > window[0]

        result["upload"] = {**cast(dict[str, Any], done[-1]), "paths": [str(p) for p in uploads]}
        result["latency_ms_during_upload"] = latency_ms(
            [end - start for start, end in answers if overlaps((start, end))]
        )
        result["latency_ms_apart_from_upload"] = latency_ms(
            [end - start for start, end in answers if not overlaps((start, end))]
        )
    return result


def print_table(name: str, result: dict[str, Any]) -> None:
    latency = result["latency_ms"]
    questions = f"{result['questions']} " + ("distinct, each asked once" if result["distinct"] else "in rotation")
    if result["ran_out_of_questions"]:
        questions += " (ran out: the run ended early; add files with --questions)"
    rows = [
        ("questions", questions),
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
    if "upload" in result:
        during, apart = result["latency_ms_during_upload"], result["latency_ms_apart_from_upload"]
        upload = result["upload"]
        rows += [
            ("upload", f"HTTP {upload['status_code']} {', '.join(upload['files'])} in {upload['seconds']} s"),
            ("p95 during upload (ms)", f"{during['p95']} ({during['answers']} answers)"),
            ("p95 apart from it (ms)", f"{apart['p95']} ({apart['answers']} answers)"),
        ]
    width = max(len(row) for row, _ in rows)
    print(f"{name}: HTTP load on {result['url']}/api/ask ({result['cpus']} CPUs)")
    for row, value in rows:
        print(f"  {row:<{width}}  {value}")
    for example in result["error_examples"]:
        print(f"  error: {example}")


def upload_files(path: Path | None) -> list[Path] | None:
    if path is None:
        return None
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"--upload {path}: no files to upload")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20, help="Concurrent clients (default 20).")
    parser.add_argument("--seconds", type=float, default=60.0, help="How long each run sends questions (default 60).")
    parser.add_argument("--url", default="", help="A running Dossier; default: start one (see --store).")
    parser.add_argument("--token", default="", help="Bearer token for a server with DOSSIER_API_TOKEN.")
    parser.add_argument("--store", type=Path, help="Serve a copy of this store (default: a fresh demo-corpus store).")
    parser.add_argument(
        "--questions",
        type=Path,
        action="append",
        help="JSONL with a 'question' field, for the distinct run; repeat to add files "
        f"(default: every questions.jsonl under {DEV_SETS}).",
    )
    parser.add_argument(
        "--runs", default="distinct,repeated", help="Runs, in order: distinct, repeated (default both)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Shuffles the distinct questions (default 0).")
    parser.add_argument("--upload", type=Path, help="A file or folder to upload during the distinct run.")
    parser.add_argument("--upload-at", type=float, default=5.0, help="Seconds into the distinct run (default 5).")
    parser.add_argument("--llm", default="extractive", help="Answerer of the started server (default extractive).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds before a request counts as an error.")
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args()

    runs = [name.strip() for name in args.runs.split(",") if name.strip()]
    if not runs or set(runs) - {"distinct", "repeated"}:
        raise SystemExit(f"--runs {args.runs!r}: choose from distinct, repeated")
    distinct = load_questions(args.questions or default_question_files()) if "distinct" in runs else []
    random.Random(args.seed).shuffle(distinct)
    repeated = load_questions([REPEATED]) if "repeated" in runs else []
    uploads = upload_files(args.upload)
    results: dict[str, Any] = {}
    process = None
    with tempfile.TemporaryDirectory(prefix="dossier-load-") as folder:
        url = args.url.rstrip("/")
        try:
            if not url:
                print(f"starting dossier serve on {args.store or 'the demo corpus'} ...", file=sys.stderr)
                process, url = start_server(Path(folder), args.llm, args.store)
            for name in runs:
                questions = Questions(distinct, True) if name == "distinct" else Questions(repeated, False)
                upload = uploads if name == "distinct" else None
                result = asyncio.run(
                    run(url, args.token, args.clients, args.seconds, questions, args.timeout, upload, args.upload_at)
                )
                results[name] = result
                print_table(name, result)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    output = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "runs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
