"""Writes from other processes reaching a running server: two concurrent writers plus a reader, and visibility time.

    .venv/bin/python bench/writers.py                          # demo corpus; 60 s of writers; 5 visibility rounds
    .venv/bin/python bench/writers.py --store /work/stores/rtqa --phases visibility   # on a copy of a large store
    .venv/bin/python bench/writers.py --chroma --replicas 2    # replicas on a `chroma run` serving the store copy

Everything runs as real processes on a temporary store (a copy of `--store`, which is never touched, or the
demo corpus ingested by `dossier ingest`), with `dossier serve` running throughout. With `--chroma` a
`chroma run --path` serves that store and every process (`--replicas` servers, writers, checks) goes through it.

- concurrent: for `--seconds`, two writer loops each run `dossier ingest` on a folder of their own, again and
  again; every round rewrites each of the writer's articles (a new revision marker in the text) and adds one new
  one. Some articles (`shared-*`) are in both folders, so the writers update the same articles at once. A reader
  asks the servers questions throughout (in turn). Afterwards, with every process stopped, the store is checked: every
  article either writer stored is there, holding the revision of the last round that wrote it (for a shared
  article, one of the two writers' last); each article's current chunks are exactly what its record counts; each
  server lists the same articles. An error is a failed ingest, a non-200 answer or a failed check.
- visibility: `--rounds` times, one new article is ingested by `dossier ingest` while the server runs, and the
  servers are asked about it until an answer cites it. Reported: seconds from the ingest process's exit to the
  first answer citing the article (each poll is one question, servers in turn), and from the ingest's start.

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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Target:
    """Where every process reads and writes: the store folder, or the Chroma server serving it."""

    store: Path
    chroma_url: str = ""

    def env(self) -> dict[str, str]:
        """This environment without DOSSIER_* settings or dossier.toml, offline, pointing at the target."""
        clean = {name: value for name, value in os.environ.items() if not name.startswith("DOSSIER_")}
        # With a server, the store folder still places the caches kept beside it (the server's lexical index, in
        # the folder's parent), so every process here shares one, as a real deployment on one machine would.
        where = {
            "DOSSIER_STORE": str(self.store),
            **({"DOSSIER_CHROMA_URL": self.chroma_url} if self.chroma_url else {}),
        }
        return {**clean, **where, "DOSSIER_CONFIG": os.devnull, "HF_HUB_OFFLINE": "1"}


def dossier(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI of this checkout in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args], cwd=REPO, env=target.env(), capture_output=True, text=True
    )


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode} before answering: see {log}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"{url} did not answer within 600 s: see {log}")


def start(command: list[str], target: Target, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=REPO, env=target.env(), stdout=out, stderr=subprocess.STDOUT)


def start_chroma(store: Path, log: Path, port: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """`chroma run` serving the store folder on `port` (0: a free one) of 127.0.0.1."""
    port = port or free_port()
    chroma = str(Path(sys.executable).with_name("chroma"))
    command = [chroma, "run", "--path", str(store), "--host", "127.0.0.1", "--port", str(port)]
    process = start(command, Target(store), log)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/api/v2/heartbeat", process, log)
    return process, url


def start_server(target: Target, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = start([sys.executable, "-m", "assistant.cli", "serve", "--no-demo", "--port", str(port)], target, log)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/api/health", process, log)
    return process, url


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

    def __init__(self, name: str, folder: Path, target: Target, stop_at: float) -> None:
        super().__init__(name=f"writer-{name}")
        self.label, self.folder, self.target, self.stop_at = name, folder, target, stop_at
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
            done = dossier(self.target, "ingest", "--json", "--quiet", str(self.folder))
            self.rounds.append(time.monotonic() - started)
            report = json.loads(done.stdout) if done.returncode == 0 else {}
            if done.returncode != 0 or report.get("skipped"):
                self.errors.append(f"round {round_}: exit {done.returncode} {done.stdout[-500:]} {done.stderr[-1000:]}")
            else:
                self.last.update(dict.fromkeys(ids, marker))
            round_ += 1


class Reader(threading.Thread):
    """Asks the servers questions in turn until `stop_at`: the demo questions and ones about the writers' articles."""

    def __init__(self, urls: list[str], stop_at: float) -> None:
        super().__init__(name="reader")
        self.urls, self.stop_at = urls, stop_at
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        demo = [json.loads(line)["question"] for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line]
        questions = [*demo, *(f"How many new benches did the {town} council approve?" for town in TOWNS)]
        n = 0
        while time.monotonic() < self.stop_at:
            question, url = questions[n % len(questions)], self.urls[n % len(self.urls)]
            n += 1
            started = time.monotonic()
            try:
                response = httpx.post(f"{url}/api/ask", json={"question": question}, timeout=600)
                if response.status_code != 200:
                    self.errors.append(f"{url} {response.status_code}: {response.text[:300]}")
            except httpx.HTTPError as exc:
                self.errors.append(f"{url} {type(exc).__name__}: {exc}")
            self.latencies.append(time.monotonic() - started)


def check_store(target: Target, writers: list[Writer], urls: list[str]) -> dict[str, Any]:
    """Every stored revision is the last one written; each article's current chunks as its record counts them."""
    from assistant.settings import Settings
    from assistant.store import Store

    opened = Store.from_settings(Settings(store=target.store, chroma_url=target.chroma_url))
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
    for url in urls:
        served = {article["id"] for article in httpx.get(f"{url}/api/articles", timeout=60).json()["articles"]}
        if served != set(records):
            failures.append(f"{url} lists {len(served)} articles, the store holds {len(records)}")
    return {
        "articles_written": len(expected),
        "articles_stored": len(records),
        "current_chunks": sum(counts.values()),
        "leftover_chunks": opened.chunk_count() - sum(counts.values()),  # old versions, invisible, swept later
        "failures": failures,
    }


def concurrent(target: Target, urls: list[str], folder: Path, seconds: float) -> dict[str, Any]:
    stop_at = time.monotonic() + seconds
    writers = [Writer(name, folder / name, target, stop_at) for name in ("a", "b")]
    reader = Reader(urls, stop_at)
    for thread in [*writers, reader]:
        thread.start()
    for thread in [*writers, reader]:
        thread.join()
    checked = check_store(target, writers, urls)
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


def visibility(target: Target, urls: list[str], folder: Path, rounds: int, tag: str = "") -> dict[str, Any]:
    """Seconds from a `dossier ingest` of one new article (its exit, and its start) to every server citing it.

    `tag` goes into the articles' ids and names, so that rounds on a store kept from an earlier run add new ones.
    """
    folder.mkdir(parents=True)
    after_exit: list[float] = []
    after_start: list[float] = []
    polls: list[int] = []
    errors: list[str] = []
    for n in range(rounds):
        article_id = f"visible-{tag}{n}"
        town = f"Quillmarsh{tag}{n}"
        path = folder / f"{article_id}.txt"
        path.write_text(
            f"title: {town} opens a tide museum\ndate: 2024-08-0{1 + n % 9}\nsource: Bench Wire\n\n"
            f"The village of {town} opened a tide museum on Sunday. It shows {300 + n} old tide tables.\n",
            encoding="utf-8",
        )
        question = f"How many old tide tables does the {town} tide museum show?"
        started = time.monotonic()
        done = dossier(target, "ingest", "--quiet", str(path))
        exited = time.monotonic()
        if done.returncode != 0:
            errors.append(f"ingest {n}: {done.stderr[-500:]}")
            continue
        asked, waiting = 0, list(urls)
        while waiting:
            url = waiting[asked % len(waiting)]
            asked += 1
            if any(citation["article_id"] == article_id for citation in ask(url, question)["citations"]):
                waiting.remove(url)
            elif time.monotonic() - exited > VISIBLE_LIMIT_S:
                errors.append(f"round {n}: {url} did not cite it within {VISIBLE_LIMIT_S} s")
                break
            else:
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
    parser.add_argument("--chroma", action="store_true", help="Serve the store copy with `chroma run`.")
    parser.add_argument("--replicas", type=int, default=1, help="`dossier serve` processes.")
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
        target = Target(folder / "store")
        if args.store:
            shutil.copytree(args.store, target.store)
        else:
            done = dossier(target, "ingest", "--quiet", str(DEMO))
            if done.returncode != 0:
                raise SystemExit(f"ingesting the demo corpus failed: {done.stderr[-2000:]}")
        processes: dict[str, subprocess.Popen[bytes]] = {}  # by name: chroma, serve-0, serve-1 ...
        result: dict[str, Any] = {}
        try:
            if args.chroma:
                chroma, chroma_url = start_chroma(target.store, folder / "chroma.log")
                processes["chroma"] = chroma
                target = Target(target.store, chroma_url)
            servers = [start_server(target, folder / f"server-{n}.log") for n in range(args.replicas)]
            processes.update({f"serve-{n}": process for n, (process, _) in enumerate(servers)})
            urls = [url for _, url in servers]
            for url in urls:  # the model and the index, as servers that have been answering
                ask(url, "What figures did Hamas report?")
            result = {
                "store": str(args.store or DEMO),
                "chroma_server": args.chroma,
                "replicas": args.replicas,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "rss_mb_at_start": rss_table(processes),
            }
            for phase in phases:
                if phase == "concurrent":
                    result["concurrent"] = concurrent(target, urls, folder / "writers", args.seconds)
                else:
                    result["visibility"] = visibility(target, urls, folder / "visible", args.rounds)
            result["rss_mb_at_end"] = rss_table(processes)
            result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(timeout=30)
            result["log_tails"] = {log.name: log.read_text(errors="replace")[-1500:] for log in folder.glob("*.log")}

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'measure':44} value")
    for key, value in result.items():
        if key == "log_tails":  # in the JSON, for when something failed
            continue
        if isinstance(value, dict):
            for name, item in value.items():
                print(f"{key + '.' + name:44} {item}")
        else:
            print(f"{key:44} {value}")
    print(f"written to {args.output}")
    errors = [e for phase in ("concurrent", "visibility") for e in result.get(phase, {}).get("errors", [])]
    sys.exit(1 if errors else 0)


def rss_table(processes: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """Each process's resident memory in MiB, by name."""
    return {name: round(rss_mb(process.pid), 1) for name, process in processes.items()}


if __name__ == "__main__":
    main()
