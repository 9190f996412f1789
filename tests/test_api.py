"""The HTTP API through real HTTP on 127.0.0.1: answers, streaming, the library, errors, auth, read-only, CORS, uploads."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.models import Answer

DossierServer = Any  # tests/conftest.py's DossierServer: url, settings, assistant

HAMAS = "What figures did Hamas report?"
ANSWER_FIELDS = set(Answer("q", "t", [], False).to_dict())
NOTE = "title: Harbour seals counted\ndate: 2024-07-02\nsource: Bay Herald\n\nVolunteers counted 317 harbour seals on the Skarholm sandbanks on Sunday, the most since 2011.\n"


def ask(server: DossierServer, question: str = HAMAS, **body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/api/ask", json={"question": question, **body}, timeout=60)


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


# -- questions -------------------------------------------------------------------------------------


def test_ask_answers_with_cited_figures(demo_server: DossierServer, citation_fields: set[str]) -> None:
    response = ask(demo_server)
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == ANSWER_FIELDS
    assert "36,000" in answer["text"] and "25,000" in answer["text"] and "[1]" in answer["text"]
    assert not answer["abstained"]
    first = answer["citations"][0]
    assert set(first) == citation_fields
    assert first["article_id"] == "putin-gaza" and first["sentence"] in first["passage"]


def test_followup_uses_the_history(demo_server: DossierServer) -> None:
    first = ask(demo_server).json()
    history = [{"role": "user", "content": HAMAS}, {"role": "assistant", "content": first["text"]}]
    answer = ask(demo_server, "And what did Israel say?", history=history, include_retrieved=True).json()
    assert answer["rewritten_question"], "a follow-up is searched with the earlier question's context"
    assert answer["rewritten_question"] != "And what did Israel say?"
    assert answer["retrieved"][0]["article_id"] == "putin-gaza"


def test_retrieved_passages_are_sent_only_on_request(demo_server: DossierServer) -> None:
    lean = ask(demo_server)
    assert lean.json()["retrieved"] == [] and "36,000" in lean.json()["text"]
    full = ask(demo_server, include_retrieved=True)
    assert len(full.json()["retrieved"]) >= 5 and full.json()["retrieved"][0]["article_id"] == "putin-gaza"
    assert len(lean.content) < len(full.content) / 2, (len(lean.content), len(full.content))
    stream = httpx.post(f"{demo_server.url}/api/ask/stream", json={"question": HAMAS}, timeout=60)
    assert sse_events(stream)[-1][1]["retrieved"] == []
    stream = httpx.post(
        f"{demo_server.url}/api/ask/stream", json={"question": HAMAS, "include_retrieved": True}, timeout=60
    )
    assert sse_events(stream)[-1][1]["retrieved"]


def test_filters_restrict_the_sources(demo_server: DossierServer) -> None:
    wire_only = ask(demo_server, filters={"sources": ["Dossier Wire"]}, include_retrieved=True).json()
    assert all(c["source"] == "Dossier Wire" for c in wire_only["citations"])
    assert "putin-gaza" not in {p["article_id"] for p in wire_only["retrieved"]}
    future = ask(demo_server, filters={"since": "2030-01-01"}).json()
    assert future["abstained"] and future["citations"] == []


def test_filters_that_leave_nothing_say_so(demo_server: DossierServer) -> None:
    reversed_range = ask(demo_server, filters={"since": "2024-07-01", "until": "2024-06-01"})
    assert reversed_range.status_code == 400
    assert "since 2024-07-01 is after until 2024-06-01" in reversed_range.json()["error"]

    nothing = ask(demo_server, filters={"since": "2030-01-01"}).json()
    assert nothing["abstained"] and nothing["closest"] == []
    assert "no article matches the filters (from 2030-01-01)" in nothing["text"]
    assert "listed below" not in nothing["text"]

    # The answer is in a Daily Ledger article: restricted to another outlet, the reply names the filter.
    elsewhere = ask(demo_server, filters={"sources": ["Dossier Wire"]}).json()
    assert elsewhere["abstained"]
    assert 'do not answer this question within the filters (outlet "Dossier Wire")' in elsewhere["text"]


def test_stream_sends_pieces_then_the_answer(demo_server: DossierServer) -> None:
    response = httpx.post(f"{demo_server.url}/api/ask/stream", json={"question": HAMAS}, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1 and kinds.count("token") >= 3
    answer = events[-1][1]
    assert set(answer) == ANSWER_FIELDS and "36,000" in str(answer["text"])
    streamed = "".join(str(data["text"]) for kind, data in events if kind == "token")
    assert "36,000" in streamed


# -- the library -----------------------------------------------------------------------------------


def test_articles_lists_the_demo_corpus(demo_server: DossierServer) -> None:
    body = httpx.get(f"{demo_server.url}/api/articles").json()
    assert body["count"] == len(body["articles"]) == 10
    gaza = next(a for a in body["articles"] if a["id"] == "putin-gaza")
    assert gaza["source"] == "The Daily Ledger" and gaza["published"] == "2024-06-06" and gaza["chunks"] >= 1
    assert "text" not in gaza


def test_an_upload_without_a_date_says_what_it_misses(start_dossier) -> None:
    server = start_dossier()
    files = [
        ("files", ("undated.txt", b"Ferry tickets rise\n\nThe Larsholm ferry will cost 4 crowns more from May.\n", "text/plain")),
        ("files", ("dated.txt", b"date: 2024-05-02\n\nTram fares fall\n\nLarsholm trams will cost 2 crowns less.\n", "text/plain")),
    ]  # fmt: skip
    undated, dated = httpx.post(f"{server.url}/api/articles", files=files, timeout=120).json()["files"]

    assert undated["status"] == dated["status"] == "added"
    assert any("has no date" in note and "date: YYYY-MM-DD" in note for note in undated["notes"])
    assert not any("has no date" in note for note in dated["notes"])


def test_upload_ask_and_delete(start_dossier, tmp_path: Path) -> None:
    server = start_dossier()
    upload = httpx.post(
        f"{server.url}/api/articles",
        files=[("files", ("seals.txt", NOTE.encode(), "text/plain")), ("files", ("empty.md", b"", "text/markdown"))],
        timeout=120,
    )
    assert upload.status_code == 200, upload.text
    seals, empty = upload.json()["files"]
    seals_id = "upload/" + Path(seals["stored_as"]).stem  # uploads have ids of their own, from the stored file
    assert seals["status"] == "added" and seals["articles"] == [seals_id] and seals["name"] == "seals.txt"
    assert seals_id.startswith("upload/seals-") and seals["notes"] == []
    assert empty["status"] == "skipped" and "empty" in empty["reason"]
    assert (server.settings.upload_dir / seals["stored_as"]).read_bytes() == NOTE.encode()  # a name, not a path

    answer = ask(server, "How many harbour seals did volunteers count?").json()
    assert "317" in answer["text"] and answer["citations"][0]["article_id"] == seals_id
    again = httpx.post(f"{server.url}/api/articles", files={"files": ("seals.txt", NOTE.encode())}, timeout=60).json()
    assert again["files"][0]["status"] == "unchanged" and again["files"][0]["articles"] == [seals_id]

    removed = httpx.delete(f"{server.url}/api/articles/{seals_id}")
    assert removed.status_code == 200 and removed.json()["removed"] == seals_id
    ids = {a["id"] for a in httpx.get(f"{server.url}/api/articles").json()["articles"]}
    assert seals_id not in ids and len(ids) == 10
    assert httpx.delete(f"{server.url}/api/articles/{seals_id}").status_code == 404


def server_paths(value: object, where: str = "") -> list[str]:
    """Every string in a JSON value that is a path on this machine (absolute, and existing or under /srv, /tmp ...)."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in server_paths(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [found for n, item in enumerate(value) for found in server_paths(item, f"{where}[{n}]")]
    if isinstance(value, str) and re.match(r"/[^/\s]", value) and Path(value.split(":")[0]).parent.exists():
        return [f"{where}: {value}"]
    return []


def test_a_pdf_past_its_deadline_is_skipped_and_the_upload_goes_on(
    start_dossier, make_pdf: Any, tmp_path: Path
) -> None:
    server = start_dossier(pdf_timeout_s=0.001)  # no PDF is read this fast: each is skipped as a stalling one would be
    pdf = make_pdf(tmp_path / "tunnel.pdf", ["Harbour tunnel\nThe tunnel cost 640 million crowns."] * 3)
    files = [("files", ("tunnel.pdf", pdf.read_bytes())), ("files", ("seals.txt", NOTE.encode()))]
    response = httpx.post(f"{server.url}/api/articles", files=files, timeout=120)
    assert response.status_code == 200, response.text
    tunnel, seals = response.json()["files"]
    assert tunnel["status"] == "skipped" and "longer than 0.001 s (pdf_timeout_s)" in tunnel["reason"], tunnel
    assert seals["status"] == "added"
    assert httpx.get(f"{server.url}/api/health").json()["articles"] == 11


def test_writes_waiting_for_the_library_leave_the_question_threads_free(start_dossier) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    server = start_dossier()
    waiting = 45  # more than the 40 threads Starlette runs sync routes (questions) on
    writes, lock = server.app.state.writes, server.app.state.library._lock
    # The lock is held (as a slow file's ingest holds it) until the question is answered, then the uploads go ahead.
    with ThreadPoolExecutor(waiting) as pool, lock:
        done = [
            pool.submit(httpx.post, f"{server.url}/api/articles", files={"files": ("seals.txt", NOTE)}, timeout=300)
            for _ in range(waiting)
        ]
        deadline = time.monotonic() + 120
        while writes.statistics().borrowed_tokens + writes.statistics().tasks_waiting < waiting:
            assert time.monotonic() < deadline, writes.statistics()
            time.sleep(0.05)
        assert writes.borrowed_tokens == 1, "one write runs (blocked on the lock); the rest wait without a thread"
        answer = httpx.post(f"{server.url}/api/ask", json={"question": HAMAS}, timeout=60)
        assert answer.status_code == 200 and "36,000" in answer.json()["text"], "questions go on meanwhile"
    statuses = sorted({future.result().json()["files"][0]["status"] for future in done})
    assert statuses == ["added", "unchanged"]


def test_server_paths_never_leave_the_server(start_dossier) -> None:
    server = start_dossier()
    text = b"Seal count\n\nVolunteers counted 317 harbour seals on the Skarholm sandbanks on Sunday, the most since 2011.\n"
    files = [("files", ("seals.txt", text, "text/plain")), ("files", ("empty.md", b"", "text/markdown"))]
    upload = httpx.post(f"{server.url}/api/articles", files=files, timeout=120)
    assert upload.status_code == 200 and [f["status"] for f in upload.json()["files"]] == ["added", "skipped"]
    upload_dir = str(server.settings.upload_dir.resolve())
    assert server_paths(upload.json()) == [] and upload_dir not in upload.text, "the upload's result names no path"
    assert upload.json()["files"][0]["stored_as"].startswith("seals-")
    for question in ("How many harbour seals did volunteers count?", "What did the Skarholm sandbank penguins eat?"):
        body = ask(server, question, include_retrieved=True).json()
        assert "seals" in json.dumps(body["retrieved"] or body["closest"])
        assert server_paths(body) == [] and upload_dir not in json.dumps(body), question
        seals = [p for p in body["retrieved"] + body["closest"] if p["article_id"].startswith("upload/seals-")]
        assert seals and all(p["url"] == "" and p["path"].startswith("seals-") for p in seals)
    cited = ask(server, "How many harbour seals did volunteers count?").json()["citations"][0]
    assert cited["article_id"].startswith("upload/seals-") and cited["url"] == ""
    articles = httpx.get(f"{server.url}/api/articles").json()
    assert server_paths(articles) == [] and upload_dir not in json.dumps(articles)
    assert all("/" not in a["path"] for a in articles["articles"]), "a file name, not where the server keeps it"
    assert {"putin-gaza.txt", "wire.jsonl:1"} <= {a["path"] for a in articles["articles"]}


UNSAFE_NAMES = [
    "../../etc/passwd.txt",
    "..\\..\\windows\\win.txt",
    "/tmp/absolute.txt",
    "sub/../../up.md",
    ".hidden.txt",
    "a%2F..%2Fb.txt",
]


def test_upload_names_never_become_paths(start_dossier, tmp_path: Path) -> None:
    server = start_dossier()
    uploads = server.settings.upload_dir.resolve()
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    for number, name in enumerate(UNSAFE_NAMES):
        text = NOTE.replace("317", str(400 + number))  # distinct texts: not duplicates of each other
        response = httpx.post(
            f"{server.url}/api/articles", files={"files": (name, text.encode(), "text/plain")}, timeout=120
        )
        assert response.status_code == 200, response.text
        result = response.json()["files"][0]
        assert result["name"] == name and result["status"] == "added", result
        assert "/" not in result["stored_as"] and (uploads / result["stored_as"]).read_text() == text
    store = tmp_path / "dossier-0" / "store"
    written = {p for p in tmp_path.rglob("*") if p.is_file() and store not in p.parents} - before
    assert written == set(uploads.iterdir())
    # the name's safe characters, then a hash of the whole name the client sent (see test_uploads_never_collide)
    assert sorted(re.sub(r"-[0-9a-f]{16}\.", ".", p.name) for p in written) == sorted(
        ["passwd.txt", "win.txt", "absolute.txt", "up.md", "hidden.txt", "a-2F-2Fb.txt"]
    )
    assert not Path("/tmp/absolute.txt").exists() or "Skarholm" not in Path("/tmp/absolute.txt").read_text()


def test_upload_refuses_other_types_and_large_files(start_dossier) -> None:
    server = start_dossier(max_upload_mb=0.01, max_upload_files=3)
    url = f"{server.url}/api/articles"
    for name in ("run.exe", "notes", "page.php", "archive.txt.zip"):
        refused = httpx.post(url, files=[("files", ("ok.txt", NOTE.encode())), ("files", (name, b"MZ..."))], timeout=60)
        assert refused.status_code == 415, (name, refused.text)
        assert name in refused.json()["error"] and ".txt" in refused.json()["error"]
    big = httpx.post(url, files={"files": ("big.txt", b"x" * 20_000)}, timeout=60)
    assert big.status_code == 413 and "big.txt" in big.json()["error"]
    whole = httpx.post(url, files={"files": ("huge.txt", b"x" * 400_000)}, timeout=60)  # over the whole request's limit
    assert whole.status_code == 413 and "error" in whole.json()
    too_many = httpx.post(url, files=[("files", (f"n{i}.txt", NOTE.encode())) for i in range(4)], timeout=60)
    assert too_many.status_code in (400, 413) and "error" in too_many.json()
    assert not server.settings.upload_dir.exists() or not any(server.settings.upload_dir.iterdir())
    assert httpx.get(f"{server.url}/api/articles").json()["count"] == 10


CANAL = "title: Alpha canal reopens\ndate: 2024-05-02\nsource: Canal Times\n\nThe Alpha canal reopened on Thursday after 19 months of repairs, the harbour office said.\n"
BAKERY = "title: Beta bakery wins the rye prize\n\nThe Beta bakery in Skarholm won the national rye prize with a loaf of 1.2 kilograms.\n"
TAKEOVERS = [  # each once replaced an article ingested from the command line
    (
        "wire.jsonl",
        '{"id": "alpha", "title": "Alpha canal closed", "text": "The Alpha canal closed for good on Friday."}\n',
    ),
    ("notes.txt", "id: beta\ntitle: Beta bakery closed\n\nThe Beta bakery in Skarholm closed for good on Friday.\n"),
    ("alpha.txt", "title: Alpha canal sold\n\nThe Alpha canal was sold to a private buyer on Friday.\n"),
]


def test_uploads_never_take_over_other_articles(start_dossier, tmp_path: Path) -> None:
    cli = tmp_path / "cli"
    cli.mkdir()
    (cli / "alpha.txt").write_text(CANAL)
    (cli / "beta.txt").write_text(BAKERY)
    server = start_dossier(extra=[cli])  # ingested the way `dossier ingest` does: ids alpha and beta
    files = [("files", (name, text.encode(), "text/plain")) for name, text in TAKEOVERS]
    results = httpx.post(f"{server.url}/api/articles", files=files, timeout=120).json()["files"]
    assert [result["status"] for result in results] == ["added", "added", "added"], results
    wire, notes, alpha = ([*result["articles"], ""][0] for result in results)
    assert wire == "upload/" + Path(results[0]["stored_as"]).stem + "/alpha"
    assert notes == "upload/" + Path(results[1]["stored_as"]).stem and alpha.startswith("upload/alpha-")
    assert "'alpha'" in results[0]["notes"][0] and wire in results[0]["notes"][0], "the file is told which id it got"
    assert "'beta'" in results[1]["notes"][0] and notes in results[1]["notes"][0]

    articles = {a["id"]: a for a in httpx.get(f"{server.url}/api/articles").json()["articles"]}
    assert articles["alpha"]["title"] == "Alpha canal reopens" and articles["beta"]["title"].startswith(
        "Beta bakery wins"
    )
    answer = ask(server, "How long were the Alpha canal repairs?").json()
    assert "19 months" in answer["text"] and "alpha" in {c["article_id"] for c in answer["citations"]}


def test_uploads_never_collide(start_dossier) -> None:
    server = start_dossier()
    names = ["名前.txt", "東京.txt", "report (1).txt", "report-1.txt", "x.TXT", "x.txt"]
    files = [
        ("files", (name, f"title: Count {n}\n\nVolunteers counted {200 + n} grey herons at site {n}.\n".encode()))
        for n, name in enumerate(names)
    ]
    results = httpx.post(f"{server.url}/api/articles", files=files, timeout=120).json()["files"]
    assert [result["status"] for result in results] == ["added"] * len(names), results
    assert len({result["stored_as"] for result in results}) == len({result["articles"][0] for result in results}) == 6
    assert Path(results[0]["stored_as"]).name.startswith("名前-") and Path(results[1]["stored_as"]).name.startswith(
        "東京-"
    )
    assert httpx.get(f"{server.url}/api/articles").json()["count"] == 10 + len(names)

    again = httpx.post(
        f"{server.url}/api/articles",
        files={"files": ("名前.txt", b"title: Count 0\n\nVolunteers counted 999 herons.\n")},
    ).json()["files"][0]
    assert again["status"] == "updated" and again["articles"] == results[0]["articles"], "the same name updates"


def test_urls_that_are_not_web_links_never_come_back(start_dossier, tmp_path: Path) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    record = {"id": "kites", "title": "Kite festival", "url": "javascript:alert(1)", "source": "Bay Herald"}
    record["text"] = "The Skarholm kite festival drew 9,300 visitors on Saturday, the organisers said."
    (folder / "wire.jsonl").write_text(json.dumps(record) + "\n")
    (folder / "gulls.txt").write_text(
        "title: Gull census\nurl: file:///etc/passwd\n\nVolunteers counted 2,150 herring gulls on the Skarholm cliffs.\n"
    )
    server = start_dossier(extra=[folder])
    articles = {a["id"]: a for a in httpx.get(f"{server.url}/api/articles").json()["articles"]}
    assert articles["kites"]["url"] == "" and articles["gulls"]["url"] == ""
    assert any("javascript:alert(1)" in note and "dropped" in note for note in articles["kites"]["notes"])
    for question, figure, article_id in (
        ("How many visitors did the Skarholm kite festival draw?", "9,300", "kites"),
        ("How many herring gulls did volunteers count on the Skarholm cliffs?", "2,150", "gulls"),
    ):
        answer = ask(server, question).json()
        assert figure in answer["text"], answer["text"]
        cited = [c for c in answer["citations"] if c["article_id"] == article_id]
        assert cited and all(not c["url"].lower().startswith(("javascript:", "file:")) for c in answer["citations"])
        assert all(not p["url"].lower().startswith(("javascript:", "file:")) for p in answer["retrieved"])


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"question": ""}, "empty"),
        ({"question": "   "}, "empty"),
        ({}, "question"),
        ({"question": "x" * 5000}, "limit"),
        ({"question": HAMAS, "k": 0}, "k"),
        ({"question": HAMAS, "filters": {"since": "June 2024"}}, "since"),
        ({"question": HAMAS, "as_of": "yesterday-ish"}, "as_of"),
        ({"question": HAMAS, "history": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"question": 42}, "question"),
        # what the schema refuses is refused, not coerced (schemathesis's negative_data_rejection)
        ({"question": HAMAS, "k": "5"}, "k"),
        ({"question": HAMAS, "k": 5.5}, "k"),
        ({"question": HAMAS, "include_retrieved": 0}, "include_retrieved"),
        ({"question": HAMAS, "filters": {"since": 0}}, "since"),
        ({"question": HAMAS, "as_of": 20240607}, "as_of"),
    ],
)
def test_bad_requests_are_400_with_a_message(demo_server: DossierServer, body: dict[str, object], says: str) -> None:
    for path in ("/api/ask", "/api/ask/stream"):
        response = httpx.post(f"{demo_server.url}{path}", json=body, timeout=60)
        assert response.status_code == 400, (path, response.text)
        assert says in response.json()["error"]


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        ({"since": "2024/06/01"}, "since: '2024/06/01' is not a date; use YYYY-MM-DD"),
        ({"until": "2024-02-30"}, "until: '2024-02-30' is not a date; use YYYY-MM-DD"),
        (
            {"since": "2024-07-01", "until": "2024-06-01"},
            "filters: since 2024-07-01 is after until 2024-06-01: swap the two dates",
        ),
    ],
    ids=["slashed-since", "impossible-until", "reversed-range"],
)
def test_bad_filters_name_the_field_as_the_cli_does(
    demo_server: DossierServer, filters: dict[str, str], error: str
) -> None:
    for path in ("/api/ask", "/api/ask/stream"):
        response = httpx.post(f"{demo_server.url}{path}", json={"question": HAMAS, "filters": filters}, timeout=60)
        assert (response.status_code, response.json()) == (400, {"error": error}), path


@pytest.mark.parametrize(
    "question",
    [
        "What figures did Hamas report? \ud800",
        "What figures \udcff did Hamas report?",
        "\ud83d\ude00 What figures did Hamas report?",
    ],
)
def test_unencodable_text_is_cleaned_at_the_door(demo_server: DossierServer, question: str) -> None:
    history = [{"role": "user", "content": "tunnel \udfff cost"}, {"role": "assistant", "content": "x\ud800"}]
    # json.dumps escapes the lone surrogates as \uXXXX, as any JSON client may send them
    body = json.dumps({"question": question, "history": history, "filters": {"sources": ["The Daily Ledger\ud800"]}})
    plain = json.dumps({"question": question})
    for path in ("/api/ask", "/api/ask/stream"):
        for content in (plain, body):
            response = httpx.post(
                f"{demo_server.url}{path}", content=content, headers={"Content-Type": "application/json"}, timeout=60
            )
            assert response.status_code == 200, (path, response.text)
        answer = response.json() if path == "/api/ask" else sse_events(response)[-1][1]
        assert "\ud800" not in str(answer["question"]) and "\udcff" not in str(answer["question"])
    answer = httpx.post(
        f"{demo_server.url}/api/ask", content=plain, headers={"Content-Type": "application/json"}, timeout=60
    ).json()
    assert "36,000" in answer["text"] and not answer["abstained"]


def test_not_json_is_400(demo_server: DossierServer) -> None:
    response = httpx.post(
        f"{demo_server.url}/api/ask", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "error" in response.json()


def test_unknown_things_are_404(demo_server: DossierServer) -> None:
    missing = httpx.delete(f"{demo_server.url}/api/articles/no-such-article")
    assert missing.status_code == 404 and "no-such-article" in missing.json()["error"]
    route = httpx.get(f"{demo_server.url}/api/nothing-here")
    assert route.status_code == 404 and "error" in route.json()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/ask", {"POST"}),
        ("PUT", "/api/ask", {"POST"}),
        ("GET", "/api/ask/stream", {"POST"}),
        ("DELETE", "/api/articles", {"GET", "POST"}),
        ("PATCH", "/api/articles/putin-gaza", {"DELETE"}),
        ("POST", "/api/health", {"GET"}),
        ("TRACE", "/api/health", {"GET"}),  # methods no route takes are 405 too, not the chat's 404
        ("QUERY", "/api/ask", {"POST"}),
        ("OPTIONS", "/api/articles", {"GET", "POST"}),
    ],
)
def test_wrong_methods_are_405_with_allow(demo_server: DossierServer, method: str, path: str, allow: set[str]) -> None:
    response = httpx.request(method, f"{demo_server.url}{path}")
    assert response.status_code == 405, response.text
    assert method in response.json()["error"] and path in response.json()["error"]
    assert {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"} == allow


def test_llm_server_down_is_503(start_dossier) -> None:
    port = closed_port()
    server = start_dossier(llm="openai:x", openai_base_url=f"http://127.0.0.1:{port}/v1", llm_timeout=5)
    for path in ("/api/ask", "/api/ask/stream"):
        response = httpx.post(f"{server.url}{path}", json={"question": HAMAS}, timeout=60)
        assert response.status_code == 503, response.text
        assert f"127.0.0.1:{port}" in response.json()["error"] and "extractive" in response.json()["error"]
    assert httpx.get(f"{server.url}/api/health").json()["answerer"] == "openai:x"


# -- auth, read-only, CORS -------------------------------------------------------------------------


def test_token_guards_the_api(start_dossier) -> None:
    server = start_dossier(api_token="s3cret-token")
    url = server.url
    assert httpx.post(f"{url}/api/ask", json={"question": HAMAS}).status_code == 401
    wrong = httpx.post(f"{url}/api/ask", json={"question": HAMAS}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "error" in wrong.json()
    assert httpx.get(f"{url}/api/articles", headers={"Authorization": "Basic czNjcmV0"}).status_code == 401
    assert httpx.delete(f"{url}/api/articles/putin-gaza").status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert httpx.post(f"{url}/api/ask", json={"question": HAMAS}, headers=good, timeout=60).status_code == 200
    assert httpx.get(f"{url}/api/articles", headers=good).json()["count"] == 10
    assert httpx.get(f"{url}/api/health").status_code == 200  # open, for load balancers
    assert httpx.get(f"{url}/widget.js").status_code == 200


def raw_request(url: str, head: str, body: list[bytes] = ()) -> tuple[int, dict[str, Any]]:
    """Send a request head (and body pieces) over a plain socket, then read the response: (status, JSON body).

    Used where a client library would insist on sending the whole body before reading the answer.
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for piece in body:
            try:
                sock.sendall(piece)
            except OSError:  # the server answered and closed: read what it said
                break
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    header, _, content = received.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, json.loads(content)


def post_head(path: str, *lines: str) -> str:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "Content-Type: application/json"]
    return "\n".join([*head, *lines, ""])


def chunked(payload: bytes, size: int = 1024) -> list[bytes]:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]


def test_token_is_checked_before_the_body_is_read(start_dossier) -> None:
    server = start_dossier(api_token="s3cret-token")
    # A declared 2 GB body that never comes: the answer cannot wait for it.
    status, body = raw_request(server.url, post_head("/api/ask", "Content-Length: 2000000000"))
    assert status == 401 and "Authorization: Bearer" in body["error"]
    # 100 MB declared, 64 KB sent: the 401 comes back while almost all of the body is still unsent.
    status, body = raw_request(server.url, post_head("/api/ask", "Content-Length: 100000000"), [b"x" * 65536])
    assert status == 401 and "error" in body
    status, body = raw_request(
        server.url, post_head("/api/ask", "Content-Length: 100000000", "Authorization: Bearer nope"), [b"{"]
    )
    assert status == 401 and "not valid" in body["error"]
    for method, path in (("DELETE", "/api/articles/putin-gaza"), ("POST", "/api/articles"), ("GET", "/api/nothing")):
        head = f"{method} {path} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\nContent-Length: 2000000000\n"
        assert raw_request(server.url, head)[0] == 401, (method, path)
    assert httpx.get(f"{server.url}/api/articles", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


@pytest.mark.parametrize("token", ["", "s3cret-token"])
def test_json_bodies_are_capped(start_dossier, token: str) -> None:
    server = start_dossier(api_token=token, max_request_kb=4)
    auth = [f"Authorization: Bearer {token}"] if token else []
    for path in ("/api/ask", "/api/ask/stream", "/api/nothing"):
        status, body = raw_request(server.url, post_head(path, "Content-Length: 2000000000", *auth))
        assert status == 413 and "max_request_kb" in body["error"], (path, body)
    big = json.dumps({"question": HAMAS, "history": [{"role": "user", "content": "x" * 20_000}]}).encode()
    for path in ("/api/ask", "/api/ask/stream"):
        status, body = raw_request(server.url, post_head(path, "Transfer-Encoding: chunked", *auth), chunked(big))
        assert status == 413 and "max_request_kb" in body["error"], (path, body)
        declared = httpx.post(f"{server.url}{path}", content=big, headers=dict(h.split(": ") for h in auth), timeout=60)
        assert declared.status_code == 413 and "4 KB" in declared.json()["error"]
    small = json.dumps({"question": HAMAS}).encode()
    status, body = raw_request(server.url, post_head("/api/ask", "Transfer-Encoding: chunked", *auth), chunked(small))
    assert status == 200 and "36,000" in body["text"]
    upload = httpx.post(
        f"{server.url}/api/articles",
        files={"files": ("seals.txt", NOTE.encode() + b" " * 8000)},
        headers=dict(h.split(": ") for h in auth),
        timeout=120,
    )
    assert upload.status_code == 200 and upload.json()["files"][0]["status"] == "added"  # uploads keep their limit


def test_without_token_the_api_is_open(demo_server: DossierServer) -> None:
    assert httpx.get(f"{demo_server.url}/api/articles").status_code == 200


def test_read_only_refuses_writes(start_dossier) -> None:
    server = start_dossier(read_only=True)
    upload = httpx.post(f"{server.url}/api/articles", files={"files": ("seals.txt", NOTE.encode())})
    assert upload.status_code == 403 and "read-only" in upload.json()["error"]
    delete = httpx.delete(f"{server.url}/api/articles/putin-gaza")
    assert delete.status_code == 403
    assert httpx.get(f"{server.url}/api/articles").json()["count"] == 10
    assert ask(server).status_code == 200
    assert httpx.get(f"{server.url}/api/health").json()["read_only"] is True


def test_cors_allows_listed_origins_only(start_dossier) -> None:
    wiki, other = "http://wiki.example:8080", "http://evil.example"
    server = start_dossier(cors_origins=f"{wiki}, http://intranet.example")
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = httpx.options(f"{server.url}/api/ask", headers={"Origin": wiki, **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == wiki
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    denied = httpx.options(f"{server.url}/api/ask", headers={"Origin": other, **preflight})
    assert "access-control-allow-origin" not in denied.headers
    response = httpx.post(f"{server.url}/api/ask", json={"question": HAMAS}, headers={"Origin": wiki}, timeout=60)
    assert response.headers["access-control-allow-origin"] == wiki
    response = httpx.post(f"{server.url}/api/ask", json={"question": HAMAS}, headers={"Origin": other}, timeout=60)
    assert "access-control-allow-origin" not in response.headers


def test_cors_preflight_and_response_agree(demo_settings: Any, demo_assistant: Any) -> None:
    from assistant.api import BackgroundServer, create_app

    wiki, other = "http://wiki.example:8080", "http://evil.example"
    app = create_app(demo_settings.with_overrides(cors_origins=wiki), demo_assistant, mount_chat=False)

    @app.post("/broken", include_in_schema=False)
    def broken() -> None:  # a bug in a route: the browser must still be allowed to read the 500
        raise RuntimeError("a bug")

    requests = [
        ("/api/ask", {"question": HAMAS}, 200),
        ("/api/ask", {"question": ""}, 400),
        ("/api/ask/stream", {"question": HAMAS}, 200),
        ("/broken", {}, 500),
    ]
    with BackgroundServer(app) as server:
        for path, body, status in requests:
            for origin, allowed in ((wiki, wiki), (other, None)):
                preflight = httpx.options(
                    f"{server.url}{path}",
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "content-type",
                    },
                )
                response = httpx.post(f"{server.url}{path}", json=body, headers={"Origin": origin}, timeout=60)
                assert response.status_code == status, (path, response.text)
                said = (
                    preflight.headers.get("access-control-allow-origin"),
                    response.headers.get("access-control-allow-origin"),
                )
                assert said == (allowed, allowed), (path, origin, said)
        assert response.status_code == 500 and response.json() == {"error": "internal error: see the server log"}


@pytest.mark.parametrize(
    ("origins", "says"),
    [
        ("", ["no other site", "DOSSIER_CORS_ORIGINS"]),
        ("https://wiki.example.org, http://intranet:8080", ["https://wiki.example.org", "http://intranet:8080"]),
    ],
)
def test_serve_says_which_sites_may_call_the_api(origins: str, says: list[str], settings: Any) -> None:
    from assistant.api import cors_summary

    line = cors_summary(settings.with_overrides(cors_origins=origins))
    assert all(phrase in line for phrase in says), line


def test_no_cors_by_default(demo_server: DossierServer) -> None:
    response = httpx.get(f"{demo_server.url}/api/articles", headers={"Origin": "http://wiki.example"})
    assert "access-control-allow-origin" not in response.headers


# -- service routes --------------------------------------------------------------------------------


def strict_schema(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    """Component `name` of an OpenAPI document as a JSON Schema that also refuses keys it does not list."""
    components = {
        key: {**value, "additionalProperties": False} if value.get("type") == "object" else value
        for key, value in openapi["components"]["schemas"].items()
    }
    return {"$ref": f"#/components/schemas/{name}", "components": {"schemas": components}}


def test_what_is_sent_is_what_the_schema_says(demo_server: DossierServer) -> None:
    """A real answer, sent whole and streamed, has exactly the keys and types /openapi.json documents for it."""
    import jsonschema

    openapi = httpx.get(f"{demo_server.url}/openapi.json").json()
    answer_schema = jsonschema.Draft202012Validator(strict_schema(openapi, "AnswerOut"))
    sent = ask(demo_server, include_retrieved=True).json()
    assert sent["citations"] and sent["sentences"] and sent["retrieved"]  # every nested record is there to check
    streamed = httpx.post(
        f"{demo_server.url}/api/ask/stream", json={"question": HAMAS, "include_retrieved": True}, timeout=60
    )
    abstained = ask(demo_server, "What did the mayor of Atlantis say about the new aqueduct?").json()
    for answer in (sent, sse_events(streamed)[-1][1], abstained):
        errors = [f"{list(error.absolute_path)}: {error.message}" for error in answer_schema.iter_errors(answer)]
        assert errors == []
    articles = httpx.get(f"{demo_server.url}/api/articles").json()
    assert list(jsonschema.Draft202012Validator(strict_schema(openapi, "ArticlesOut")).iter_errors(articles)) == []


def test_the_schema_refuses_what_the_answer_does_not_send(demo_server: DossierServer) -> None:
    """The check above has teeth: a key too many, one missing, or a wrong type is an error."""
    import jsonschema

    openapi = httpx.get(f"{demo_server.url}/openapi.json").json()
    validator = jsonschema.Draft202012Validator(strict_schema(openapi, "AnswerOut"))
    sent = ask(demo_server, include_retrieved=True).json()
    first = sent["citations"][0]
    for broken in (
        {**sent, "extra": 1},
        {key: value for key, value in sent.items() if key != "as_of"},
        {**sent, "citations": [{**first, "start": "0"}]},
        {**sent, "retrieved": [{**sent["retrieved"][0], "path": None}]},
    ):
        assert list(validator.iter_errors(broken))


def test_health(demo_server: DossierServer) -> None:
    health = httpx.get(f"{demo_server.url}/api/health").json()
    assert health["status"] == "ok" and health["articles"] == 10 and health["answerer"] == "extractive"


def test_openapi_documents_the_api(demo_server: DossierServer, citation_fields: set[str]) -> None:
    schema = httpx.get(f"{demo_server.url}/openapi.json").json()
    paths = schema["paths"]
    assert {"/api/ask", "/api/ask/stream", "/api/articles", "/api/articles/{article_id}", "/api/health"} <= set(paths)
    assert {"get", "post"} <= set(paths["/api/articles"]) and "delete" in paths["/api/articles/{article_id}"]
    components = schema["components"]["schemas"]
    assert set(components["AnswerOut"]["properties"]) == ANSWER_FIELDS
    assert set(components["CitationOut"]["properties"]) == citation_fields
    assert {"400", "503"} <= set(paths["/api/ask"]["post"]["responses"])
    assert {"413", "415", "403"} <= set(paths["/api/articles"]["post"]["responses"])
    assert "text/event-stream" in paths["/api/ask/stream"]["post"]["responses"]["200"]["content"]
    assert httpx.get(f"{demo_server.url}/docs").status_code == 200


def test_the_schema_states_what_this_server_takes(demo_server: DossierServer, start_dossier) -> None:
    """The schema is the contract schemathesis checks (`make fuzz`): what it allows is answered, nothing more."""
    open_schema = httpx.get(f"{demo_server.url}/openapi.json").json()
    assert "securitySchemes" not in open_schema.get("components", {}), "an open server asks for no token"
    ask = open_schema["components"]["schemas"]["AskIn"]["properties"]
    assert ask["question"]["maxLength"] == demo_server.settings.max_question_chars and ask["question"]["minLength"] == 1
    assert {"type": "string", "enum": ["extractive"]} in ask["answerer"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": 50} in ask["k"]["anyOf"]
    body = open_schema["components"]["schemas"]["Body_upload_api_articles_post"]
    upload = body["properties"]["files"]
    assert (upload["minItems"], upload["maxItems"]) == (1, demo_server.settings.max_upload_files)
    assert body["additionalProperties"] is False
    assert {"token", "answer", "error"} == set(
        open_schema["paths"]["/api/ask/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"]["schema"][
            "properties"
        ]["event"]["enum"]
    )
    for zero in ({"question": HAMAS, "k": 3.0}, {"question": HAMAS, "as_of": "2024-06-07"}):  # JSON's integer, a day
        assert ask_ok(demo_server, zero)

    guarded = start_dossier(api_token="s3cret")
    schema = httpx.get(f"{guarded.url}/openapi.json").json()
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())
    assert schema["paths"]["/api/ask"]["post"]["security"] and "401" in schema["paths"]["/api/ask"]["post"]["responses"]
    assert "security" not in schema["paths"]["/api/health"]["get"]


def ask_ok(server: DossierServer, body: dict[str, object]) -> bool:
    return httpx.post(f"{server.url}/api/ask", json=body, timeout=60).status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_need_no_other_site(demo_server: DossierServer, page: str) -> None:
    docs = httpx.get(f"{demo_server.url}{page}")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", docs.text)
    assets += re.findall(r"""url\s*:\s*["']([^"']+)["']""", docs.text) + re.findall(r"spec-url=\"([^\"]+)\"", docs.text)
    assert len(assets) >= 2 and "/openapi.json" in assets, assets
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), f"{page} loads {asset} from another site"
        response = httpx.get(f"{demo_server.url}{asset}")
        assert response.status_code == 200 and response.content, asset
    assert not re.search(r"https?://(?!127\.0\.0\.1)", docs.text), "no other site is named at all"


@pytest.mark.browser
def test_browser_api_docs_render_offline(demo_server: DossierServer, browser: Any) -> None:
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_here(route: Any) -> None:
        if route.request.url.startswith(demo_server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(f"{demo_server.url}/docs")
    page.locator(".swagger-ui .opblock-summary-path", has_text="/api/ask").first.wait_for(timeout=30_000)
    assert "Dossier" in page.locator(".swagger-ui .info .title").inner_text()
    assert elsewhere == []
    page.close()


def test_widget_script_and_embed_route(demo_server: DossierServer) -> None:
    script = httpx.get(f"{demo_server.url}/widget.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text and "textContent" in script.text and "/api/ask" in script.text
    embed = httpx.get(f"{demo_server.url}/embed", follow_redirects=False)
    assert embed.status_code in (302, 307) and embed.headers["location"] == "/?embed=1"
    page = httpx.get(f"{demo_server.url}/?embed=1")
    assert page.status_code == 200 and "dossier-embed" in page.text


def test_an_upload_takes_title_outlet_date_and_link(start_dossier) -> None:
    server = start_dossier()
    text = b"The Larsholm ferry will cost 4 crowns more from May, the harbour board said.\n"
    form = {
        "title": "Ferry fares rise",
        "outlet": "Larsholm Post",
        "published": "2024-05-02",
        "url": "https://example.org/ferry",
    }
    added = httpx.post(f"{server.url}/api/articles", files={"files": ("ferry.txt", text)}, data=form, timeout=120)

    assert added.status_code == 200, added.text
    [result] = added.json()["files"]
    assert not any("has no date" in note for note in result["notes"])
    [article] = [a for a in httpx.get(f"{server.url}/api/articles").json()["articles"] if a["id"] in result["articles"]]
    assert (article["title"], article["source"], article["published"]) == (
        "Ferry fares rise",
        "Larsholm Post",
        "2024-05-02",
    )
    assert article["url"] == "https://example.org/ferry"

    wrong = httpx.post(
        f"{server.url}/api/articles", files={"files": ("tram.txt", text)}, data={"published": "2 May"}, timeout=60
    )
    assert wrong.status_code == 400 and "'2 May' is not a date" in wrong.json()["error"]
    ids = {a["id"] for a in httpx.get(f"{server.url}/api/articles").json()["articles"]}
    assert not any(i.startswith("upload/tram") for i in ids)  # a wrong field stores nothing
