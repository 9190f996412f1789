"""Writes from other processes reaching a running server: two concurrent writers plus a reader, and visibility time.

    .venv/bin/python bench/writers.py                          # demo corpus; 60 s of writers; 5 visibility rounds
    .venv/bin/python bench/writers.py --store /work/stores/rtqa --phases visibility   # on a copy of a large store

Everything runs as real processes on a temporary store (a copy of `--store`, which is never touched, or the
demo corpus ingested by `dossier ingest`), with `dossier serve` running throughout:

- concurrent: for `--seconds`, two writer loops each run `dossier ingest` on a folder of their own, again and
  again; every round rewrites each of the writer's articles (a new revision marker in the text) and adds one new
  one. Some articles (`shared-*`) are in both folders, so the writers update the same articles at once. A reader
  asks the server questions throughout. Afterwards, with every process stopped, the store is checked: every
  article either writer stored is there, holding the revision of the last round that wrote it (for a shared
  article, one of the two writers' last); each article's current chunks are exactly what its record counts; the
  server lists the same articles. An error is a failed ingest, a non-200 answer or a failed check.
- visibility: `--rounds` times, one new article is ingested by `dossier ingest` while the server runs, and the
  server is asked about it until an answer cites it. Reported: seconds from the ingest process's exit to the
  first answer citing the article (each poll is one question), and from the ingest's start.

Prints a table and writes bench/results/writers.json (with the machine's load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
DEMO = REPO / "examples" / "articles"
QUESTIONS = REPO / "examples" / "questions.jsonl"
OWN_ARTICLES = 4  # articles only one writer has, per writer (one more is added each round)
SHARED_ARTICLES = 3  # articles both writers update
POLL_S = 0.1  # pause between visibility questions
VISIBLE_LIMIT_S = 300  # a visibility round that takes longer fails
TOWNS = ["Larsholm", "Vestdal", "Brevik", "Alderport", "Skarvik", "Northgate", "Harrowby", "Kelmouth", "Osterby"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env() -> dict[str, str]:
    """This environment without DOSSIER_* settings or dossier.toml, offline."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("DOSSIER_")}
    return {**clean, "DOSSIER_CONFIG": os.devnull, "HF_HUB_OFFLINE": "1"}


def dossier(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI of this checkout in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args], cwd=REPO, env=env(), capture_output=True, text=True
    )


def start_server(store: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "assistant.cli", "serve", "--no-demo", "--port", str(port), "--store", str(store)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dossier serve exited with {process.returncode}: see {log}")
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"dossier serve did not answer within 600 s: see {log}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from `ps -o rss` (KiB), in MiB."""
    return int(subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout) / 1024


def ask(url: str, question: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/api/ask", json={"question": question}, timeout=600)
    response.raise_for_status()
    return dict(response.json())


def article_text(article_id: str, marker: str, n: int) -> str:
    town = TOWNS[n % len(TOWNS)]
    return (
        f"title: {town} council report {article_id}\ndate: 2024-07-{1 + n % 28:02d}\nsource: Bench Wire\n\n"
        f"The {town} council met on Tuesday to discuss report {article_id}. Councillors approved "
        f"{100 + n} new benches for the parks, and the harbour office said traffic was steady.\n\n"
        f"This text is revision {marker} of the report.\n"
    )


# -- concurrent writers and a reader -----------------------------------------------------------


class Writer(threading.Thread):
    """Runs `dossier ingest` on its own folder until `stop_at`; remembers each article's last stored revision."""

    def __init__(self, name: str, folder: Path, store: Path, stop_at: float) -> None:
        super().__init__(name=f"writer-{name}")
        self.label, self.folder, self.store, self.stop_at = name, folder, store, stop_at
        self.last: dict[str, str] = {}  # article id -> marker of the last round whose ingest succeeded
        self.rounds: list[float] = []
        self.errors: list[str] = []
        folder.mkdir(parents=True)

    def run(self) -> None:
        round_ = 0
        while time.monotonic() < self.stop_at:
            marker = f"{self.label}{round_}"
            ids = [f"{self.label}-{n}" for n in range(OWN_ARTICLES + round_ + 1)]
            ids += [f"shared-{n}" for n in range(SHARED_ARTICLES)]
            for n, article_id in enumerate(ids):
                (self.folder / f"{article_id}.txt").write_text(article_text(article_id, marker, n), encoding="utf-8")
            started = time.monotonic()
            done = dossier("ingest", "--json", "--quiet", str(self.folder), "--store", str(self.store))
            self.rounds.append(time.monotonic() - started)
            report = json.loads(done.stdout) if done.returncode == 0 else {}
            if done.returncode != 0 or report.get("skipped"):
                self.errors.append(f"round {round_}: exit {done.returncode} {done.stdout[-500:]} {done.stderr[-1000:]}")
            else:
                self.last.update(dict.fromkeys(ids, marker))
            round_ += 1


class Reader(threading.Thread):
    """Asks the server questions until `stop_at`: the demo questions and ones about the writers' articles."""

    def __init__(self, url: str, stop_at: float) -> None:
        super().__init__(name="reader")
        self.url, self.stop_at = url, stop_at
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        demo = [json.loads(line)["question"] for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line]
        questions = [*demo, *(f"How many new benches did the {town} council approve?" for town in TOWNS)]
        n = 0
        while time.monotonic() < self.stop_at:
            question = questions[n % len(questions)]
            n += 1
            started = time.monotonic()
            try:
                response = httpx.post(f"{self.url}/api/ask", json={"question": question}, timeout=600)
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code}: {response.text[:300]}")
            except httpx.HTTPError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.monotonic() - started)


def check_store(store: Path, writers: list[Writer], url: str) -> dict[str, Any]:
    """Every stored revision is the last one written; each article's current chunks as its record counts them."""
    from assistant.settings import Settings
    from assistant.store import Store

    opened = Store.from_settings(Settings(store=store))
    records = {record.id: record for record in opened.list_articles()}
    texts = {article_id: opened.get_article(article_id).text for article_id in records}
    failures: list[str] = []
    expected: dict[str, set[str]] = {}
    for writer in writers:
        for article_id, marker in writer.last.items():
            expected.setdefault(article_id, set()).add(marker)
    for article_id, markers in sorted(expected.items()):
        if article_id not in records:
            failures.append(f"{article_id}: lost (no record)")
        elif not any(f"revision {marker} " in texts[article_id] for marker in markers):
            failures.append(f"{article_id}: holds an older revision, not the last of {sorted(markers)}")
    counts = Counter(chunk.passage.article_id for chunk in opened.current_chunks())
    for article_id, record in records.items():
        if counts[article_id] != record.chunks:
            failures.append(f"{article_id}: {counts[article_id]} current chunks, its record says {record.chunks}")
    incomplete = opened.incomplete()
    if incomplete:
        failures.append(f"incomplete articles: {sorted(incomplete)}")
    served = {article["id"] for article in httpx.get(f"{url}/api/articles", timeout=60).json()["articles"]}
    if served != set(records):
        failures.append(f"the server lists {len(served)} articles, the store holds {len(records)}")
    return {
        "articles_written": len(expected),
        "articles_stored": len(records),
        "current_chunks": sum(counts.values()),
        "leftover_chunks": opened.chunk_count() - sum(counts.values()),  # old versions, invisible, swept later
        "failures": failures,
    }


def concurrent(store: Path, url: str, folder: Path, seconds: float) -> dict[str, Any]:
    stop_at = time.monotonic() + seconds
    writers = [Writer(name, folder / name, store, stop_at) for name in ("a", "b")]
    reader = Reader(url, stop_at)
    for thread in [*writers, reader]:
        thread.start()
    for thread in [*writers, reader]:
        thread.join()
    checked = check_store(store, writers, url)
    errors = [f"writer {w.label} {e}" for w in writers for e in w.errors] + [f"reader {e}" for e in reader.errors]
    return {
        "seconds": seconds,
        "ingest_rounds": {w.label: len(w.rounds) for w in writers},
        "ingest_round_s_median": round(statistics.median([r for w in writers for r in w.rounds] or [0.0]), 1),
        "questions": len(reader.latencies),
        "question_s_median": round(statistics.median(reader.latencies), 2) if reader.latencies else None,
        "question_s_max": round(max(reader.latencies), 2) if reader.latencies else None,
        **checked,
        "errors": errors + checked["failures"],
    }


# -- visibility --------------------------------------------------------------------------------


def visibility(store: Path, url: str, folder: Path, rounds: int) -> dict[str, Any]:
    """Seconds from a `dossier ingest` of one new article (its exit, and its start) to an answer citing it."""
    folder.mkdir(parents=True)
    after_exit: list[float] = []
    after_start: list[float] = []
    polls: list[int] = []
    errors: list[str] = []
    for n in range(rounds):
        article_id = f"visible-{n}"
        town = f"Quillmarsh{n}"
        path = folder / f"{article_id}.txt"
        path.write_text(
            f"title: {town} opens a tide museum\ndate: 2024-08-0{1 + n % 9}\nsource: Bench Wire\n\n"
            f"The village of {town} opened a tide museum on Sunday. It shows {300 + n} old tide tables.\n",
            encoding="utf-8",
        )
        question = f"How many old tide tables does the {town} tide museum show?"
        started = time.monotonic()
        done = dossier("ingest", "--quiet", str(path), "--store", str(store))
        exited = time.monotonic()
        if done.returncode != 0:
            errors.append(f"ingest {n}: {done.stderr[-500:]}")
            continue
        asked = 0
        while True:
            asked += 1
            answer = ask(url, question)
            if any(citation["article_id"] == article_id for citation in answer["citations"]):
                break
            if time.monotonic() - exited > VISIBLE_LIMIT_S:
                errors.append(f"round {n}: not answered within {VISIBLE_LIMIT_S} s")
                break
            time.sleep(POLL_S)
        now = time.monotonic()
        after_exit.append(now - exited)
        after_start.append(now - started)
        polls.append(asked)
    return {
        "rounds": rounds,
        "after_ingest_exit_s": [round(s, 2) for s in after_exit],
        "after_ingest_exit_s_median": round(statistics.median(after_exit), 2) if after_exit else None,
        "after_ingest_start_s_median": round(statistics.median(after_start), 2) if after_start else None,
        "questions_until_cited": polls,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="A store to copy (default: the demo corpus, ingested here).")
    parser.add_argument("--seconds", type=float, default=60, help="How long the writers and the reader run.")
    parser.add_argument("--rounds", type=int, default=5, help="Visibility rounds (one new article each).")
    parser.add_argument("--phases", default="concurrent,visibility", help="Comma-separated: concurrent, visibility.")
    parser.add_argument("--output", type=Path, default=RESULTS / "writers.json")
    args = parser.parse_args()
    phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    if unknown := set(phases) - {"concurrent", "visibility"}:
        parser.error(f"unknown phases {sorted(unknown)}")

    with tempfile.TemporaryDirectory(prefix="dossier-writers-") as temp:
        folder = Path(temp)
        store = folder / "store"
        if args.store:
            shutil.copytree(args.store, store)
        else:
            done = dossier("ingest", "--quiet", str(DEMO), "--store", str(store))
            if done.returncode != 0:
                raise SystemExit(f"ingesting the demo corpus failed: {done.stderr[-2000:]}")
        process, url = start_server(store, folder / "server.log")
        try:
            ask(url, "What figures did Hamas report?")  # the model and the index, as a server that has been answering
            result: dict[str, Any] = {
                "store": str(args.store or DEMO),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "server_rss_mb_at_start": round(rss_mb(process.pid), 1),
            }
            for phase in phases:
                if phase == "concurrent":
                    result["concurrent"] = concurrent(store, url, folder / "writers", args.seconds)
                else:
                    result["visibility"] = visibility(store, url, folder / "visible", args.rounds)
            result["server_rss_mb_at_end"] = round(rss_mb(process.pid), 1)
            result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            process.terminate()
            process.wait(timeout=30)
            result["server_log_tail"] = (folder / "server.log").read_text(errors="replace")[-1500:]

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'measure':44} value")
    for key, value in result.items():
        if key == "server_log_tail":  # in the JSON, for when something failed
            continue
        if isinstance(value, dict):
            for name, item in value.items():
                print(f"{key + '.' + name:44} {item}")
        else:
            print(f"{key:44} {value}")
    print(f"written to {args.output}")
    errors = [e for phase in ("concurrent", "visibility") for e in result.get(phase, {}).get("errors", [])]
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
