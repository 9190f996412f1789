"""The HTTP API through real HTTP on 127.0.0.1: answers, streaming, the library, errors, auth, read-only, CORS, uploads."""

from __future__ import annotations

import json
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
    answer = ask(demo_server, "And what did Israel say?", history=history).json()
    assert answer["rewritten_question"], "a follow-up is searched with the earlier question's context"
    assert answer["rewritten_question"] != "And what did Israel say?"
    assert answer["retrieved"][0]["article_id"] == "putin-gaza"


def test_filters_restrict_the_sources(demo_server: DossierServer) -> None:
    wire_only = ask(demo_server, filters={"sources": ["Dossier Wire"]}).json()
    assert all(c["source"] == "Dossier Wire" for c in wire_only["citations"])
    assert "putin-gaza" not in {p["article_id"] for p in wire_only["retrieved"]}
    future = ask(demo_server, filters={"since": "2030-01-01"}).json()
    assert future["abstained"] and future["citations"] == []


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


def test_upload_ask_and_delete(start_dossier, tmp_path: Path) -> None:
    server = start_dossier()
    upload = httpx.post(
        f"{server.url}/api/articles",
        files=[("files", ("seals.txt", NOTE.encode(), "text/plain")), ("files", ("empty.md", b"", "text/markdown"))],
        timeout=120,
    )
    assert upload.status_code == 200, upload.text
    seals, empty = upload.json()["files"]
    assert seals["status"] == "added" and seals["articles"] == ["seals"] and seals["name"] == "seals.txt"
    assert empty["status"] == "skipped" and "empty" in empty["reason"]
    assert Path(seals["stored_as"]).parent == server.settings.upload_dir.resolve()

    answer = ask(server, "How many harbour seals did volunteers count?").json()
    assert "317" in answer["text"] and answer["citations"][0]["article_id"] == "seals"
    again = httpx.post(f"{server.url}/api/articles", files={"files": ("seals.txt", NOTE.encode())}, timeout=60).json()
    assert again["files"][0]["status"] == "unchanged"

    removed = httpx.delete(f"{server.url}/api/articles/seals")
    assert removed.status_code == 200 and removed.json()["removed"] == "seals"
    ids = {a["id"] for a in httpx.get(f"{server.url}/api/articles").json()["articles"]}
    assert "seals" not in ids and len(ids) == 10
    assert httpx.delete(f"{server.url}/api/articles/seals").status_code == 404


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
        stored = Path(result["stored_as"])
        assert stored.parent == uploads and stored.read_text() == text
    store = tmp_path / "dossier-0" / "store"
    written = {p for p in tmp_path.rglob("*") if p.is_file() and store not in p.parents} - before
    assert written == set(uploads.iterdir())
    assert sorted(p.name for p in written) == sorted(
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
    ],
)
def test_bad_requests_are_400_with_a_message(demo_server: DossierServer, body: dict[str, object], says: str) -> None:
    for path in ("/api/ask", "/api/ask/stream"):
        response = httpx.post(f"{demo_server.url}{path}", json=body, timeout=60)
        assert response.status_code == 400, (path, response.text)
        assert says in response.json()["error"]


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


def test_no_cors_by_default(demo_server: DossierServer) -> None:
    response = httpx.get(f"{demo_server.url}/api/articles", headers={"Origin": "http://wiki.example"})
    assert "access-control-allow-origin" not in response.headers


# -- service routes --------------------------------------------------------------------------------


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
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())
    assert httpx.get(f"{demo_server.url}/docs").status_code == 200


def test_widget_script_and_embed_route(demo_server: DossierServer) -> None:
    script = httpx.get(f"{demo_server.url}/widget.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text and "textContent" in script.text and "/api/ask" in script.text
    embed = httpx.get(f"{demo_server.url}/embed", follow_redirects=False)
    assert embed.status_code in (302, 307) and embed.headers["location"] == "/?embed=1"
    page = httpx.get(f"{demo_server.url}/?embed=1")
    assert page.status_code == 200 and "dossier-embed" in page.text
