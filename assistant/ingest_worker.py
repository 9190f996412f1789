"""Uploads ingested in a child process at a lower CPU priority, so a server's answers go on while files are read.

Reading, cleaning, chunking and embedding an upload is seconds to minutes of work in Python and in the model.
In the serving process it competes with every question for the interpreter lock and the cores (issue 12: an
upload of ten articles took 61 s during a load run, 7-10 s alone, and answers' p95 rose with it). `IngestWorker`
runs `StoredArticles.ingest` in one long-lived child process, started at the first upload, niced by
`INGEST_NICENESS`; the server's readers see its writes as they see another process's `dossier ingest`, by the
store's generation. One job at a time (the library's lock serialises writes anyway); a child that dies is
replaced at the next job, and the job it was doing is reported as failed.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from assistant.errors import DossierError

if TYPE_CHECKING:
    from assistant.settings import Settings
    from ingest.models import ArticleFields
    from ingest.pipeline import IngestReport

# Added to the child's niceness: the scheduler gives the serving process's threads the cores first.
INGEST_NICENESS = 10
# Seconds the child gets to exit when the server stops, before it is killed.
STOP_TIMEOUT_S = 10.0


class IngestWorkerError(DossierError):
    """The ingest process stopped before it finished a job."""


class IngestWorker:
    """`StoredArticles.ingest` of the store `settings` name, run in a child process.

    The child is `python -m assistant.ingest_worker`: the settings, then one job after another, go to it as
    pickles on its stdin, and each result comes back on its stdout (the child's own prints go to stderr).

    >>> worker = IngestWorker(settings)                                   # doctest: +SKIP
    >>> worker.ingest([Path("data/uploads/x.txt")], "upload").added       # doctest: +SKIP
    ['upload/x.txt']
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def ingest(
        self, paths: list[Path], namespace: str | None = None, fields: ArticleFields | None = None
    ) -> IngestReport:
        """What `StoredArticles.ingest(paths, namespace=..., fields=...)` returns, done by the child."""
        with self._lock:
            process = self._start()
            assert process.stdin is not None and process.stdout is not None
            try:
                _send(process.stdin, (paths, namespace, fields))
                kind, value = pickle.load(process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                code = self._stop()
                raise IngestWorkerError(
                    f"the ingest process stopped (exit code {code}) while reading {', '.join(p.name for p in paths)}; "
                    "it may be stored in part: upload it again"
                ) from exc
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the child after its current job; a later job starts another."""
        with self._lock:
            self._stop()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        process = subprocess.Popen(
            [sys.executable, "-m", "assistant.ingest_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdin is not None
        _send(process.stdin, self.settings)
        self._process = process
        return process

    def _stop(self) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None and process.stdin is not None:
            with contextlib.suppress(OSError):
                _send(process.stdin, None)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a job half-sent to a dead child cannot be flushed
                    stream.close()
        return process.returncode


def _send(stream: IO[bytes], value: Any) -> None:
    pickle.dump(value, stream)
    stream.flush()


def main() -> None:
    """The child: read the settings, then ingest each job until told to stop (None) or the parent goes away."""
    replies = os.fdopen(os.dup(1), "wb")  # the pipe to the parent; everything else printed goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    jobs = sys.stdin.buffer
    os.nice(INGEST_NICENESS)
    from assistant.library import StoredArticles
    from assistant.store import Store

    settings = pickle.load(jobs)
    stored = StoredArticles(Store.from_settings(settings), settings)
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:
            return
        if job is None:
            return
        paths, namespace, fields = job
        try:
            reply: tuple[str, Any] = ("ok", stored.ingest(paths, namespace=namespace, fields=fields))
        except DossierError as exc:
            reply = ("error", exc)
        except Exception as exc:  # a bug: the job fails with its message, the next job still runs
            reply = ("error", IngestWorkerError(f"ingest failed: {type(exc).__name__}: {exc}"))
        _send(replies, reply)


if __name__ == "__main__":
    main()
