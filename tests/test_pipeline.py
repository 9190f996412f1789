"""Incremental ingest into a real store (embedded and on a Chroma server), and the library commands of the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import CORPUS_FILES

from assistant.cli import cli
from assistant.embeddings import Embedder
from assistant.errors import NotFoundError
from assistant.settings import Settings
from assistant.store import Store
from ingest.chunking import chunk_article
from ingest.loaders import load_paths
from ingest.pipeline import UPLOAD_NAMESPACE, ingest_paths

CORPUS_IDS = {"bridge", "orchard", "ferry", "brief-museum", "briefs/2"}


def chunk_ids(store: Store) -> set[str]:
    return {chunk.id for chunk in store.current_chunks()}


def assert_consistent(store: Store) -> None:
    """Every stored chunk is current, each article has exactly its recorded chunks, and offsets match its text."""
    records = {record.id: record for record in store.list_articles()}
    chunks = store.current_chunks()
    assert store.chunk_count() == len(chunks) == sum(record.chunks for record in records.values())
    for article_id, record in records.items():
        text = store.get_article(article_id).text
        mine = [chunk.passage for chunk in chunks if chunk.passage.article_id == article_id]
        assert len(mine) == record.chunks
        assert all(text[passage.start : passage.end] == passage.text for passage in mine)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# -- incremental behaviour, in both store modes ------------------------------------------------


def test_first_ingest_stores_every_article_and_chunk(store_backend: Store, corpus: Path) -> None:
    expected = {article.id: article for article in load_paths([corpus]).articles}

    report = ingest_paths([corpus], store_backend)

    assert sorted(report.added) == sorted(CORPUS_IDS)
    assert (report.updated, report.unchanged, report.duplicates, report.skipped) == ([], [], [], [])
    assert report.chunks == sum(len(chunk_article(article)) for article in expected.values()) == 6
    assert store_backend.article_count() == 5
    assert_consistent(store_backend)
    for article_id, article in expected.items():
        record = store_backend.get_article(article_id)
        assert (record.title, record.text, record.published, record.source) == (
            article.title,
            article.text,
            article.published,
            article.source,
        )
        assert record.version == article.version
    assert store_backend.get_article("ferry").removed[-1] == "Subscribe to the Larsholm Gazette Newsletter"


def test_search_finds_the_passage_that_holds_a_fact(store_backend: Store, corpus: Path, embedder: Embedder) -> None:
    ingest_paths([corpus], store_backend)

    [best, *_] = store_backend.search(embedder.encode_query("How long is the new harbour bridge in Larsholm?"), k=3)

    assert best.article_id == "bridge"
    assert "1,240 metres" in best.text
    assert store_backend.get_article("bridge").text[best.start : best.end] == best.text
    assert 0 < best.score <= 1


def test_reingesting_unchanged_articles_does_nothing(store_backend: Store, corpus: Path) -> None:
    ingest_paths([corpus], store_backend)
    before, generation = chunk_ids(store_backend), store_backend.generation()

    report = ingest_paths([corpus], store_backend)

    assert sorted(report.unchanged) == sorted(CORPUS_IDS)
    assert (report.added, report.updated, report.chunks) == ([], [], 0)
    assert chunk_ids(store_backend) == before
    assert store_backend.generation() == generation


def test_changed_article_replaces_all_its_old_chunks(store_backend: Store, corpus: Path, embedder: Embedder) -> None:
    bridge = corpus / "bridge.txt"
    ingest_paths([corpus], store_backend, chunk_size=200)
    old_chunks = {chunk.id for chunk in store_backend.current_chunks() if chunk.passage.article_id == "bridge"}
    assert len(old_chunks) >= 2
    bridge.write_text(
        bridge.read_text().split("\n\n")[0] + "\n\nThe steel span is 1,310 metres long, the city now says.\n"
    )

    report = ingest_paths([corpus], store_backend, chunk_size=200)

    assert report.updated == ["bridge"] and report.added == []
    assert sorted(report.unchanged) == sorted(CORPUS_IDS - {"bridge"})
    record = store_backend.get_article("bridge")
    assert "1,310 metres" in record.text and "1,240" not in record.text
    bridge_chunks = [chunk for chunk in store_backend.current_chunks() if chunk.passage.article_id == "bridge"]
    assert [chunk.passage.text for chunk in bridge_chunks] == [
        "The steel span is 1,310 metres long, the city now says."
    ]
    assert not old_chunks & chunk_ids(store_backend)
    assert_consistent(store_backend)
    hits = store_backend.search(embedder.encode_query("Mayor Henrik Sand cut the ribbon at 10:00"), k=10)
    assert not any("Henrik Sand" in hit.text for hit in hits)  # the old version is gone from search too


def test_metadata_only_change_is_an_update(store_backend: Store, corpus: Path) -> None:
    ingest_paths([corpus], store_backend)
    bridge = corpus / "bridge.txt"
    bridge.write_text(bridge.read_text().replace("source: Larsholm Gazette", "source: Harbor Daily"))

    report = ingest_paths([corpus], store_backend)

    assert report.updated == ["bridge"] and report.duplicates == []
    assert store_backend.get_article("bridge").source == "Harbor Daily"
    assert {
        chunk.passage.source for chunk in store_backend.current_chunks() if chunk.passage.article_id == "bridge"
    } == {"Harbor Daily"}
    assert_consistent(store_backend)


def test_a_second_ingest_reads_only_the_records_and_chunks_of_what_it_brings(
    store_backend: Store, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding one file to a store never reads every record or every chunk (which, on a store of a million chunks,
    is minutes), yet still tells an unchanged article and a duplicate from a new one."""
    ingest_paths([corpus], store_backend)
    later = tmp_path / "later"
    later.mkdir()
    shutil.copy(corpus / "bridge.txt", later / "bridge.txt")  # unchanged
    shutil.copy(corpus / "orchard.md", later / "orchard-copy.md")  # a duplicate under another id
    (later / "ferry-news.txt").write_text(
        "Ferry timetable changes in Larsholm\n\nThe summer timetable starts on 1 June.\n"
    )
    reads: list[tuple[str, dict[str, object]]] = []
    for name in ("_articles", "_chunks"):
        collection = getattr(store_backend, name)
        monkeypatch.setattr(collection, "get", _spying(collection.get, name, reads))

    report = ingest_paths([later], store_backend)

    assert (report.added, report.unchanged) == (["ferry-news"], ["bridge"])
    assert report.duplicates == [(str(later / "orchard-copy.md"), "orchard")]
    assert reads and all(kwargs.get("ids") or kwargs.get("where") for _, kwargs in reads), reads
    assert_consistent(store_backend)


def _spying(get: Callable[..., object], name: str, reads: list[tuple[str, dict[str, object]]]) -> Callable[..., object]:
    def spied(**kwargs: object) -> object:
        reads.append((name, kwargs))
        return get(**kwargs)

    return spied


def test_duplicate_text_under_two_names_is_stored_once_and_reported(store_backend: Store, corpus: Path) -> None:
    copy = corpus / "copy-of-bridge.txt"  # read after bridge.txt: the first file read keeps the text
    shutil.copy(corpus / "bridge.txt", copy)

    first = ingest_paths([corpus], store_backend)
    shutil.copy(corpus / "orchard.md", corpus / "zz-orchard-again.md")
    second = ingest_paths([corpus], store_backend)

    assert sorted(first.added) == sorted(CORPUS_IDS)
    assert first.duplicates == [(str(copy), "bridge")]
    assert sorted(second.duplicates) == [(str(copy), "bridge"), (str(corpus / "zz-orchard-again.md"), "orchard")]
    assert store_backend.article_count() == 5
    assert_consistent(store_backend)


def test_removed_article_leaves_no_chunks(store_backend: Store, corpus: Path) -> None:
    ingest_paths([corpus], store_backend)
    others = {chunk.id for chunk in store_backend.current_chunks() if chunk.passage.article_id != "ferry"}

    removed = store_backend.remove("ferry")

    assert removed == 2
    assert chunk_ids(store_backend) == others
    assert store_backend.chunk_count() == len(others)
    with pytest.raises(NotFoundError, match="ferry"):
        store_backend.get_article("ferry")
    with pytest.raises(NotFoundError):
        store_backend.remove("ferry")
    assert ingest_paths([corpus], store_backend).added == ["ferry"]  # and it can come back
    assert_consistent(store_backend)


def test_bad_files_neither_stop_the_batch_nor_touch_stored_data(
    store_backend: Store, corpus: Path, tmp_path: Path
) -> None:
    ingest_paths([corpus], store_backend)
    before = {record.id: record.version for record in store_backend.list_articles()}
    stored_chunks = chunk_ids(store_backend)
    (corpus / "bridge.txt").write_bytes(bytes(range(256)) * 8)  # a stored article's file is now garbage
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "scan.pdf").write_bytes(b"%PDF-1.4 garbage" * 50)
    (corpus / "broken.jsonl").write_text(
        '{"id": "late-news", "title": "Late", "text": "The pier reopened after 3 weeks."}\n{oops\n'
    )
    (corpus / "new.txt").write_text("Lighthouse relit\n\nThe Skarvik lighthouse was relit on Sunday after 12 years.\n")

    report = ingest_paths([corpus, tmp_path / "missing"], store_backend)

    assert sorted(report.added) == ["late-news", "new"]
    assert sorted(report.unchanged) == sorted(CORPUS_IDS - {"bridge"})
    skipped = {Path(item.path.split(":")[0]).name: item.reason for item in report.skipped}
    assert set(skipped) == {"bridge.txt", "empty.md", "scan.pdf", "broken.jsonl", "missing"}
    assert f"{corpus / 'broken.jsonl'}:2" in [item.path for item in report.skipped]
    after = {record.id: record.version for record in store_backend.list_articles()}
    assert {key: after[key] for key in before} == before
    assert stored_chunks < chunk_ids(store_backend)
    assert_consistent(store_backend)


def test_the_same_id_twice_in_one_run_is_skipped(store_backend: Store, tmp_path: Path) -> None:
    folder = tmp_path / "twins"
    folder.mkdir()
    (folder / "pier.md").write_text("# Pier reopens\n\nThe north pier reopened after 3 weeks.\n")
    (folder / "pier.txt").write_text("Pier closes\n\nThe south pier closed for 2 months of repairs.\n")

    report = ingest_paths([folder], store_backend)

    assert report.added == ["pier"]
    [skipped] = report.skipped
    assert skipped.path == str(folder / "pier.txt") and "already used" in skipped.reason
    assert store_backend.get_article("pier").title == "Pier reopens"


def test_an_ingest_into_a_namespace_writes_only_inside_it(store: Store, corpus: Path, tmp_path: Path) -> None:
    ingest_paths([corpus], store)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "bridge.txt").write_text("id: bridge\ntitle: Bridge closed\n\nThe Larsholm bridge closed for good.\n")

    report = ingest_paths([uploads / "bridge.txt"], store, namespace=UPLOAD_NAMESPACE)

    assert report.added == ["upload/bridge"] and report.updated == []
    assert report.notes == [(str(uploads / "bridge.txt"), report.notes[0][1])] and "'bridge'" in report.notes[0][1]
    assert store.get_article("bridge").title == "Larsholm opens its new harbour bridge"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("upload/notes.txt", "Notes\n\nThe ferry left at noon.\n"),  # a folder named like the namespace
        ("notes.txt", "id: upload/bridge\ntitle: Notes\n\nThe ferry left at noon.\n"),
        ("wire.jsonl", '{"id": "upload/x/1", "title": "Notes", "text": "The ferry left at noon."}\n'),
    ],
)
def test_a_plain_ingest_cannot_write_into_the_upload_namespace(
    store: Store, tmp_path: Path, name: str, text: str
) -> None:
    folder = tmp_path / "cli"
    (folder / name).parent.mkdir(parents=True)
    (folder / name).write_text(text)

    report = ingest_paths([folder], store)

    assert report.stored == 0 and store.article_count() == 0
    [skipped] = report.skipped
    assert "kept for uploaded files" in skipped.reason and "another id" in skipped.reason


@pytest.mark.parametrize("namespace", ["", "up/load", "../x", "up load"])
def test_a_namespace_is_one_plain_word(store: Store, corpus: Path, namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        ingest_paths([corpus], store, namespace=namespace)


def test_store_refuses_a_different_embedding_model(settings: Settings, store: Store, corpus: Path) -> None:
    from assistant.errors import ConfigError

    ingest_paths([corpus / "bridge.txt"], store)

    with pytest.raises(ConfigError, match="built with embedding model 'bundled:all-MiniLM-L6-v2'"):
        Store.from_settings(settings.with_overrides(embedding_model=str(settings.store.parent / "other-model")))


# -- the CLI -----------------------------------------------------------------------------------

SUMMARY_NUMBERS = ("added", "updated", "unchanged", "duplicates", "chunks", "seconds", "chunks_per_second")


def test_cli_ingest_json_summary(backend_settings: Settings, corpus: Path) -> None:
    (corpus / "empty.txt").write_bytes(b"")
    shutil.copy(corpus / "bridge.txt", corpus / "copy-of-bridge.txt")

    result = run("ingest", str(corpus), "--json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {*SUMMARY_NUMBERS, "skipped"}
    assert all(isinstance(summary[key], int | float) and not isinstance(summary[key], bool) for key in SUMMARY_NUMBERS)
    counts = {key: summary[key] for key in ("added", "updated", "unchanged", "duplicates", "chunks")}
    assert counts == {"added": 5, "updated": 0, "unchanged": 0, "duplicates": 1, "chunks": 6}
    assert summary["seconds"] > 0 and summary["chunks_per_second"] > 0
    assert summary["skipped"] == [{"path": str(corpus / "empty.txt"), "reason": "empty file"}]
    assert f"duplicate {corpus / 'copy-of-bridge.txt'}: same text as stored article bridge" in result.stderr

    again = json.loads(run("ingest", str(corpus), "--json").stdout)
    assert (again["added"], again["unchanged"], again["chunks"]) == (0, 5, 0)
    assert Store.from_settings(backend_settings).article_count() == 5


def test_cli_ingest_text_summary_names_each_skipped_file(store: Store, corpus: Path, tmp_path: Path) -> None:
    (corpus / "blob.txt").write_bytes(bytes(range(256)) * 4)
    (corpus / "scan.pdf").write_bytes(b"\x89 not a pdf at all " * 100)

    result = run(
        "ingest",
        str(corpus / "bridge.txt"),
        str(corpus / "blob.txt"),
        str(corpus / "scan.pdf"),
        str(tmp_path / "gone.md"),
    )

    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"skipped {corpus / 'blob.txt'}: looks like a binary file, not text (NUL bytes found)",
        f"skipped {corpus / 'scan.pdf'}: cannot parse PDF: Stream has ended unexpectedly",
        f"skipped {tmp_path / 'gone.md'}: no such file or folder",
    ]
    assert result.stdout.startswith("added 1, updated 0, unchanged 0, duplicates 0, skipped 3; 1 chunks in ")


def test_cli_ingest_prints_one_line_per_skip_and_nothing_else(tmp_path: Path) -> None:
    """Through the installed `dossier` script: libraries' own warnings (pypdf's) must not add nameless lines."""
    (tmp_path / "scan.pdf").write_bytes(b"\x89 not a pdf at all " * 100)
    (tmp_path / "cut.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")

    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dossier")),
            "ingest",
            str(tmp_path / "scan.pdf"),
            str(tmp_path / "cut.pdf"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"skipped {tmp_path / 'scan.pdf'}: cannot parse PDF: Stream has ended unexpectedly",
        f"skipped {tmp_path / 'cut.pdf'}: cannot parse PDF: Stream has ended unexpectedly",
    ]
    assert result.stdout.startswith("added 0, updated 0, unchanged 0, duplicates 0, skipped 2; 0 chunks in ")


def test_cli_ingest_says_when_it_had_to_guess_an_encoding(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cafe.txt"
    path.write_bytes("Café reopens\n\nThe café in Münster reopened on Monday.\n".encode("latin-1"))

    result = run("ingest", str(path), "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["added"] == 1
    assert f"note {path}: not valid UTF-8" in result.stderr


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda folder: folder / "missing", id="missing-path"),
        pytest.param(lambda folder: _write(folder / "empty.txt", b""), id="empty-file"),
        pytest.param(lambda folder: _write(folder / "notes.docx", b"PK"), id="unsupported-file"),
        pytest.param(lambda folder: folder, id="folder-without-articles"),
    ],
)
def test_cli_ingest_fails_only_when_nothing_could_be_ingested(
    store: Store, tmp_path: Path, make_input: Callable[[Path], Path]
) -> None:
    folder = tmp_path / "input"
    folder.mkdir()
    path = make_input(folder)

    result = run("ingest", str(path), "--json")

    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["added"] == 0 and len(summary["skipped"]) == 1
    assert summary["skipped"][0]["path"].startswith(str(folder)) and summary["skipped"][0]["reason"]


def test_cli_ingest_honours_the_configured_size_limit(
    store: Store, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOSSIER_MAX_FILE_MB", "0.0005")  # about 520 bytes: bridge.txt is larger, briefs.jsonl too

    result = run("ingest", str(corpus / "bridge.txt"), "--json")

    assert result.exit_code == 1
    [skipped] = json.loads(result.stdout)["skipped"]
    assert skipped["path"] == str(corpus / "bridge.txt")
    assert "over the 0.0005 MB limit" in skipped["reason"]


def test_cli_ingest_of_unchanged_articles_is_a_success(store: Store, corpus: Path) -> None:
    assert run("ingest", str(corpus / "orchard.md")).exit_code == 0

    result = run("ingest", str(corpus / "orchard.md"))

    assert result.exit_code == 0
    assert "unchanged 1" in result.stdout


@pytest.mark.parametrize("args", [["ingest"], ["ingest", "--bogus", "x"], ["show"], ["remove"], ["frobnicate"]])
def test_cli_misuse_exits_with_a_usage_error(args: list[str]) -> None:
    result = run(*args)

    assert result.exit_code == 2
    assert "Usage:" in result.stderr


def test_cli_bad_settings_give_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOSSIER_CHUNK_SIZE", "tiny")

    result = run("list")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid settings (chunk_size:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_library_commands_with_store(corpus: Path, tmp_path: Path, settings: Settings) -> None:
    library = tmp_path / "library"
    assert run("ingest", str(corpus), "--store", str(library), "--quiet").exit_code == 0

    listing = run("list", "--store", str(library))
    listed = json.loads(run("list", "--store", str(library), "--json").stdout)
    shown = run("show", "ferry", "--raw", "--store", str(library))
    shown_json = json.loads(run("show", "bridge", "--json", "--store", str(library)).stdout)
    stats = json.loads(run("stats", "--json", "--store", str(library)).stdout)

    newest_first = ["orchard", "bridge", "briefs/2", "brief-museum", "ferry"]  # ferry has no date
    assert [line.split("\t")[0] for line in listing.stdout.splitlines()] == newest_first
    assert [(record["id"], record["chunks"]) for record in listed] == list(
        zip(newest_first, [1, 1, 1, 1, 2], strict=True)
    )
    assert "title: Ferry crews end four-day strike in Larsholm" in shown.stdout
    assert "420 crew members" in shown.stdout
    assert "- Subscribe to the Larsholm Gazette Newsletter" in shown.stdout.split("--- removed by cleaning ---")[1]
    assert (
        "- Crew members walk back to the ferry terminal in Larsholm on Thursday"
        in shown.stdout.split("--- captions")[1]
    )
    assert shown_json["title"] == "Larsholm opens its new harbour bridge" and "1,240 metres" in shown_json["text"]
    assert stats == {
        "store": str(library),
        "articles": 5,
        "chunks": 6,
        "sources": ["City Desk", "Farm Weekly", "Larsholm Gazette"],
        "earliest": "2024-03-08",
        "latest": "2024-10-02",
        "embedding_model": "bundled:all-MiniLM-L6-v2",
    }
    assert not settings.store.exists()  # --store won over DOSSIER_STORE

    removed = run("remove", "ferry", "--store", str(library))
    missing = run("show", "ferry", "--store", str(library))

    assert removed.exit_code == 0 and removed.stdout.strip() == "removed ferry (2 chunks)"
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: no article with id 'ferry': see dossier list"
    assert json.loads(run("stats", "--json", "--store", str(library)).stdout)["chunks"] == 4
    assert run("remove", "ferry", "--store", str(library)).exit_code == 1


def test_stats_count_only_the_chunks_readers_see(corpus: Path, tmp_path: Path, embedder: Embedder) -> None:
    library = tmp_path / "library"
    assert run("ingest", str(corpus), "--store", str(library), "--quiet").exit_code == 0
    store = Store.from_settings(Settings(store=library), embedder=embedder)
    # What a kill mid-write leaves: chunks of a version no record makes current, and of an article never recorded.
    orphans = [
        ("bridge", "old-version"),
        ("bridge", "newer-version-never-recorded"),
        ("no-such-article", "v1"),
    ]
    store._chunks.upsert(
        ids=[f"{article_id}::{version}::{n}" for n, (article_id, version) in enumerate(orphans * 100)],
        embeddings=embedder.encode(["orphan"] * len(orphans) * 100).tolist(),
        documents=["orphan"] * len(orphans) * 100,
        metadatas=[{"article_id": article_id, "version": version} for article_id, version in orphans * 100],
    )
    assert store.chunk_count() == 6 + 300 and len(store.current_chunks()) == 6
    store.close()

    stats = json.loads(run("stats", "--json", "--store", str(library)).stdout)
    assert stats["chunks"] == 6 and stats["articles"] == 5
    assert "chunks: 6" in run("stats", "--store", str(library)).stdout.splitlines()


LONG_LINE = "The harbour office counted boats in the marina again on Sunday morning. " * 28_000  # about 2 MB


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"A title line\n{LONG_LINE}\n", id="title-then-one-long-line"),
        pytest.param(f"{LONG_LINE}\n", id="one-long-line"),
        pytest.param(f"title: Boats\n\n{LONG_LINE}\n", id="front-matter-then-one-long-line"),
    ],
)
def test_an_article_over_the_chunk_limit_is_skipped_by_name(corpus: Path, tmp_path: Path, text: str) -> None:
    (corpus / "marina.txt").write_text(text)
    library = tmp_path / "library"

    result = run("ingest", str(corpus), "--store", str(library), "--quiet")

    assert result.exit_code == 0
    [line] = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert line.startswith(f"skipped {corpus / 'marina.txt'}: article too long:")
    assert "over the limit of 500 per article (max_chunks_per_article)" in line
    assert "added 5," in result.stdout, "the other files of the batch are stored"
    assert json.loads(run("stats", "--json", "--store", str(library)).stdout)["chunks"] == 6


def test_the_chunk_limit_is_a_setting(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOSSIER_MAX_CHUNKS_PER_ARTICLE", "1")

    result = run("ingest", str(corpus), "--store", str(tmp_path / "library"), "--quiet", "--json")

    assert json.loads(result.stdout)["skipped"] == [
        {
            "path": str(corpus / "ferry.txt"),
            "reason": "article too long: 2 chunks, over the limit of 1 per article (max_chunks_per_article); "
            "split the file into articles or raise the setting",
        }
    ]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("evil\nskipped forged.txt: fake.txt", "evil\\nskipped forged.txt: fake.txt"),
        ("two\r\nlines.txt", "two\\r\\nlines.txt"),
        ("red\x1b[31m.txt", "red\\x1b[31m.txt"),
        ("sep\u2028arator.txt", "sep\\u2028arator.txt"),
        (os.fsdecode(b"caf\xe9.txt"), "caf\\xe9.txt"),  # a byte that is not UTF-8
    ],
)
def test_file_names_never_break_a_message_into_lines(tmp_path: Path, corpus: Path, name: str, shown: str) -> None:
    (corpus / name).write_bytes(b"")  # empty: skipped, so its name is printed
    (corpus / f"dup {name}").write_text(CORPUS_FILES["bridge.txt"])  # a duplicate: its name is printed too
    (corpus / f"url {name}").write_text("title: Boats\nurl: javascript:x\n\nThe office counted 1,204 boats.\n")

    result = run("ingest", str(corpus), "--store", str(tmp_path / "library"), "--quiet")

    lines = result.stderr.splitlines()
    assert f"skipped {corpus}/{shown}: empty file" in lines
    assert any(line.startswith(f"duplicate {corpus}/dup {shown}: same text") for line in lines)
    assert any(line.startswith(f"note {corpus}/url {shown}: url 'javascript:x' dropped") for line in lines)
    assert all(line.startswith(("skipped ", "note ", "duplicate ")) for line in lines), lines
    assert len(lines) == 3


def test_cli_list_on_an_empty_store_says_what_to_do(store: Store) -> None:
    result = run("list")

    assert result.exit_code == 0
    assert result.stdout.strip() == "no articles yet: run dossier ingest PATH"


@pytest.mark.server
def test_cli_store_option_wins_over_a_configured_server(
    chroma_server: str, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOSSIER_CHROMA_URL", chroma_server)
    monkeypatch.setenv("DOSSIER_COLLECTION", "never-used-by-this-test")
    local = tmp_path / "local"

    assert run("ingest", str(corpus / "orchard.md"), "--store", str(local), "--json").exit_code == 0

    assert json.loads(run("stats", "--json", "--store", str(local)).stdout)["articles"] == 1
    on_server = json.loads(run("stats", "--json").stdout)
    assert (on_server["store"], on_server["articles"]) == (chroma_server, 0)


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
