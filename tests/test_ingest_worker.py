"""Uploads ingested in a child process: what it stores, what it reports, and that a dead child is replaced."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.ingest_worker import IngestWorker, IngestWorkerError
from assistant.library import StoredArticles
from assistant.settings import Settings
from assistant.store import Store
from ingest.pipeline import UPLOAD_NAMESPACE

BRIDGE = "title: Larsholm bridge opens\ndate: 2024-05-02\n\nThe Larsholm harbour bridge, 1,240 metres long, opened on Thursday.\n"


@pytest.fixture
def worker(settings: Settings) -> Iterator[IngestWorker]:
    started = IngestWorker(settings)
    yield started
    started.close()


def test_a_child_process_ingests_what_this_process_then_reads(
    worker: IngestWorker, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "bridge.txt"
    path.write_text(BRIDGE, encoding="utf-8")

    report = worker.ingest([path], UPLOAD_NAMESPACE)

    assert worker.pid is not None and worker.pid != os.getpid()
    [article_id] = report.added
    assert article_id.startswith(f"{UPLOAD_NAMESPACE}/")
    here = StoredArticles(Store.from_settings(settings), settings)
    assert here.article(article_id).title == "Larsholm bridge opens"
    assert worker.ingest([path], UPLOAD_NAMESPACE).unchanged == [article_id]  # the same child, the same store


def test_a_dead_child_fails_its_job_and_is_replaced(worker: IngestWorker, tmp_path: Path) -> None:
    path = tmp_path / "bridge.txt"
    path.write_text(BRIDGE, encoding="utf-8")
    worker.ingest([path], UPLOAD_NAMESPACE)
    first = worker.pid
    assert first is not None

    os.kill(first, signal.SIGKILL)
    path.write_text(BRIDGE.replace("1,240", "1,250"), encoding="utf-8")
    try:
        report = worker.ingest([path], UPLOAD_NAMESPACE)
    except IngestWorkerError as exc:  # the job went to the dead child: it says so, the next one runs
        assert "the ingest process stopped" in str(exc) and "bridge.txt" in str(exc)
        report = worker.ingest([path], UPLOAD_NAMESPACE)

    assert report.updated and worker.pid not in (None, first)


def test_a_file_the_child_cannot_read_comes_back_skipped_with_its_reason(worker: IngestWorker, tmp_path: Path) -> None:
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\x00\x01\x02" * 100)

    report = worker.ingest([path], UPLOAD_NAMESPACE)

    assert not report.added
    [skipped] = report.skipped
    assert "binary.txt" in str(skipped)
