"""The chat page and the wiki widget: gradio_client on the chat endpoint, login, read-only, and a real headless browser."""

from __future__ import annotations

import functools
import html
import http.server
import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HAMAS = "What figures did Hamas report?"
LANTERNS = "How many lanterns did the Zephyr council approve?"
# An article whose every field tries to run script: title, outlet, url, and body (HTML, an event handler, a Markdown link).
XSS_ARTICLE = """title: Zephyr council <img src=x onerror="window.__xss=1"> lantern vote
date: 2024-06-01
source: Zephyr <script>window.__xss=1</script> Times
url: javascript:window.__xss=1

The Zephyr council approved 77 new lanterns for the harbour promenade on Monday. <script>window.__xss=1</script> Officials said the lanterns cost 4,200 crowns each <img src=x onerror="window.__xss=1"> and will be lit in July. [click](javascript:window.__xss=1) for the council minutes.
"""
NO_XSS = """() => ({
    flag: typeof window.__xss,
    handlers: document.querySelectorAll('img[onerror], svg[onload], [onclick], [ontoggle]').length,
    scripts: document.querySelectorAll('#dossier-chatbot script, #dossier-articles script, [data-dossier] script').length,
    jsLinks: [...document.querySelectorAll('a')].filter(a => a.href.trim().toLowerCase().startsWith('javascript')).length,
})"""
CLEAN = {"flag": "undefined", "handlers": 0, "scripts": 0, "jsLinks": 0}
VAULT = "title: Vault\n\nThe vault code is PLUM-4471 and nobody outside the server room knows it.\n"
SEALS = "title: Harbour seals counted\ndate: 2024-07-02\nsource: Bay Herald\n\nVolunteers counted 317 harbour seals.\n"


def message_text(message: dict[str, Any]) -> str:
    """A chat message's markup with character references resolved (the chat escapes every text character it can)."""
    content = message["content"]
    if isinstance(content, list):
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return html.unescape(content if isinstance(content, str) else str(content))


@pytest.fixture
def xss_file(tmp_path: Path) -> Path:
    path = tmp_path / "incoming" / "zephyr.txt"
    path.parent.mkdir()
    path.write_text(XSS_ARTICLE, encoding="utf-8")
    return path


# -- gradio_client on the chat endpoint ------------------------------------------------------------


def test_chat_endpoint_answers_and_keeps_the_conversation(demo_server: Any) -> None:
    from gradio_client import Client

    client = Client(demo_server.url, verbose=False, analytics_enabled=False, download_files=False)
    box, chat = client.predict(HAMAS, [], "", "", api_name="/chat")
    assert box == "" and [m["role"] for m in chat] == ["user", "assistant"]
    answer = message_text(chat[-1])
    assert (
        "36,000" in answer and "dossier-ref" in answer and "Sources (" in answer and "Putin blames Washington" in answer
    )
    _, chat = client.predict([], "", "", api_name="/retry")
    assert len(chat) == 2 and "36,000" in message_text(chat[-1]), "retry replaces the last answer"
    _, chat = client.predict("And what did Israel say?", [], "", "", api_name="/chat")
    assert len(chat) == 4 and "Searched as:" in message_text(chat[-1]), "the follow-up was read with the first question"
    _, chat = client.predict("What did the ECB do?", ["Dossier Wire"], "", "", api_name="/chat")
    assert "European Central Bank" not in message_text(chat[-1])  # the outlet filter keeps the ECB article out
    _, chat = client.predict(HAMAS, [], "June 2024", "", api_name="/chat")
    assert "YYYY-MM-DD" in message_text(chat[-1]), "a bad date is a polite message, not a crash"
    box, chat = client.predict(api_name="/clear")
    assert chat == []


def test_chat_answers_a_question_with_a_lone_surrogate(demo_server: Any) -> None:
    # Gradio's HTTP call API, because gradio_client cannot send a lone surrogate; json.dumps escapes it as \ud800.
    data = json.dumps({"data": [HAMAS + " \ud800", [], "", "", "extractive"]})  # question, filters, answerer
    call = httpx.post(
        f"{demo_server.url}/gradio_api/call/chat", content=data, headers={"Content-Type": "application/json"}
    )
    assert call.status_code == 200, call.text
    events = httpx.get(f"{demo_server.url}/gradio_api/call/chat/{call.json()['event_id']}", timeout=120).text
    completed = events.split("event: complete\ndata: ", 1)
    assert len(completed) == 2, events[-500:]
    chat = json.loads(completed[1].split("\n", 1)[0])[1]  # outputs: the question box, the chat (, its state)
    assert [m["role"] for m in chat] == ["user", "assistant"] and "36,000" in message_text(chat[-1])
    assert "\ud800" not in message_text(chat[0]) and "\ufffd" in message_text(chat[0])


def test_chat_login_when_auth_is_set(start_dossier: Any) -> None:
    from gradio_client import Client

    server = start_dossier(auth="ann:correct-horse")
    assert httpx.get(f"{server.url}/config").status_code == 401
    with pytest.raises(Exception):  # noqa: B017 (gradio_client raises a plain ValueError/HTTP error)
        Client(server.url, verbose=False, analytics_enabled=False, download_files=False, auth=("ann", "wrong"))
    client = Client(
        server.url, verbose=False, analytics_enabled=False, download_files=False, auth=("ann", "correct-horse")
    )
    _, chat = client.predict(HAMAS, [], "", "", api_name="/chat")
    assert "36,000" in message_text(chat[-1])
    assert httpx.get(f"{server.url}/api/health").status_code == 200  # the API has its own guard (api_token)


def test_read_only_chat_has_no_upload_or_remove(start_dossier: Any, demo_server: Any) -> None:
    def elem_ids(url: str) -> set[str]:
        config = httpx.get(f"{url}/config").json()
        return {c["props"].get("elem_id") for c in config["components"] if c.get("props", {}).get("elem_id")}

    read_only = start_dossier(read_only=True)
    assert not {"dossier-upload", "dossier-ingest", "dossier-remove"} & elem_ids(read_only.url)
    assert {"dossier-upload", "dossier-ingest", "dossier-remove"} <= elem_ids(demo_server.url)
    assert "dossier-articles" in elem_ids(read_only.url)


# -- the chat's events, called the way a script can call them ---------------------------------------


def chat_events(http: httpx.Client) -> dict[str, int]:
    """The chat's events by the elem_id of the component that triggers them, read from /config like the page does."""
    config = http.get("/config").json()
    elem_ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    return {
        elem_ids[target[0]]: dependency["id"]
        for dependency in config["dependencies"]
        for target in dependency["targets"]
        if elem_ids.get(target[0])
    }


def run_event(http: httpx.Client, fn_index: int, data: list[Any], session: str = "") -> dict[str, Any]:
    """Run one chat event through Gradio's queue (join, then read the session's event stream), as the page does.

    Events the chat registers with api_visibility="private" are hidden from gradio_client, not from this.
    Returns Gradio's `process_completed` message: {"success": bool, "output": {"data": [...]} or {"error": ...}}.
    """
    session = session or uuid.uuid4().hex
    joined = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session})
    assert joined.status_code == 200, joined.text
    event_id = joined.json()["event_id"]
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as events:
        for line in events.iter_lines():
            message = json.loads(line.removeprefix("data:")) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                return dict(message)
    raise AssertionError(f"event {fn_index} never completed")


NO_FIELDS = ["", "", "", ""]  # the upload form's title, outlet, date and URL, left empty


def file_data(path: str, name: str = "") -> dict[str, Any]:
    """A file input as Gradio's client sends it: the server-side path the file is said to be at."""
    return {"path": path, "orig_name": name or Path(path).name, "meta": {"_type": "gradio.FileData"}}


@pytest.fixture
def gradio_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gradio's upload folder, this test's own (GRADIO_TEMP_DIR is read when a server builds its chat)."""
    folder = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def stored_by_gradio(cache: Path, name: str) -> list[Path]:
    return [path for path in cache.rglob(name) if path.is_file()]


def test_chat_upload_reads_only_files_gradio_received(start_dossier: Any, tmp_path: Path, gradio_cache: Path) -> None:
    cache = gradio_cache
    server = start_dossier()
    secret = tmp_path / "private" / "vault.txt"
    secret.parent.mkdir()
    secret.write_text(VAULT)
    planted = cache / "planted" / "vault.txt"  # inside Gradio's folder, but Gradio never received it
    planted.parent.mkdir(parents=True)
    planted.write_text(VAULT)
    link = cache / "link" / "vault.txt"
    link.parent.mkdir()
    link.symlink_to(secret)
    attacks = {
        "an absolute path": str(secret),
        "../ out of Gradio's folder": str(cache / "link" / ".." / ".." / "private" / "vault.txt"),
        "a symbolic link in Gradio's folder": str(link),
        "a file Gradio did not receive": str(planted),
    }
    with httpx.Client(base_url=server.url, timeout=120) as http:
        ingest = chat_events(http)["dossier-ingest"]
        for how, path in attacks.items():
            done = run_event(http, ingest, [[file_data(path)], *NO_FIELDS])
            assert len(server.assistant.stored.articles()) == 10, f"{how} was ingested"
            if done["success"]:  # refused by the chat's handler rather than by Gradio: it says why
                assert "skipped" in html.unescape(done["output"]["data"][0]), (how, done)
        answer = http.post("/api/ask", json={"question": "What is the vault code?"}).json()
        assert "PLUM-4471" not in json.dumps(answer)
        copies = [
            p
            for p in cache.rglob("*")
            if p.is_file() and not p.is_symlink() and p != planted and "PLUM" in p.read_text()
        ]
        assert copies == [], "Gradio copied the server file into its cache"

        uploaded = http.post("/gradio_api/upload", files={"files": ("seals.txt", SEALS.encode())}).json()
        done = run_event(http, ingest, [[file_data(uploaded[0], "seals.txt")], *NO_FIELDS])
        assert done["success"] and "added" in html.unescape(done["output"]["data"][0]), done
    assert len(server.assistant.stored.articles()) == 11, "a file sent to Gradio's upload route is still ingested"


def test_chat_upload_cannot_take_over_an_article(start_dossier: Any, gradio_cache: Path) -> None:
    server = start_dossier()
    takeover = "id: putin-gaza\ntitle: Putin praises Washington\n\nPutin praised Washington on Friday.\n"
    with httpx.Client(base_url=server.url, timeout=120) as http:
        uploaded = http.post("/gradio_api/upload", files={"files": ("putin-gaza.txt", takeover.encode())}).json()
        ingest = chat_events(http)["dossier-ingest"]
        done = run_event(http, ingest, [[file_data(uploaded[0], "putin-gaza.txt")], *NO_FIELDS])
    message = html.unescape(re.sub("<[^>]+>", "", done["output"]["data"][0]))
    assert "putin-gaza.txt: added: upload/putin-gaza-" in message and "asked for id 'putin-gaza'" in message, message
    gaza = next(a for a in server.assistant.stored.articles() if a.id == "putin-gaza")
    assert gaza.title.startswith("Putin blames Washington")


# -- who may use the chat's doors: open, token, login, read-only ------------------------------------

# Questions, the library list, and Ask and Stop trading places (the buttons' visibility; Stop ends a stream).
CHAT_EVENTS = {"load_example", "example", "chat", "retry", "clear", "refresh", "busy", "idle", "stop"}
WRITE_EVENTS = {"upload", "remove"}
# Gradio routes a caller without a login must not reach when the chat needs one (some Gradio leaves open itself).
ANONYMOUS_REFUSED = [
    ("POST", "/gradio_api/cancel", {"json": {"session_hash": "s", "fn_index": 1, "event_id": "e"}}),
    ("POST", "/gradio_api/reset", {"json": {"event_id": "e"}}),
    ("POST", "/gradio_api/upload", {"files": {"files": ("seals.txt", SEALS.encode())}}),
    ("POST", "/gradio_api/queue/join", {"json": {"data": [HAMAS, [], [], "", ""], "fn_index": 1, "session_hash": "s"}}),
    ("GET", "/gradio_api/heartbeat/s", {}),
    ("POST", "/gradio_api/stream/e", {"json": {"data": []}}),
    ("GET", "/gradio_api/startup-events", {}),
    ("GET", "/gradio_api/info", {}),
    ("GET", "/config", {}),
]


def event_names(http: httpx.Client) -> set[str]:
    """The api_name of every event the chat registered that runs server code: all a script can call, private ones
    included (clearing also registers one without, which only cancels an answer still streaming in). Gradio numbers
    the repeats of a name (`idle_1`, `idle_2`): they count once."""
    dependencies = http.get("/config").json()["dependencies"]
    return {re.sub(r"_\d+$", "", dep["api_name"]) for dep in dependencies if dep["backend_fn"]}


def test_token_without_login_serves_a_read_only_chat(start_dossier: Any, gradio_cache: Path) -> None:
    from gradio_client import Client

    server = start_dossier(api_token="s3cret-token")
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert event_names(http) == CHAT_EVENTS, "no upload or remove event exists to be called without the token"
        config = http.get("/config").json()
        note = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "dossier-no-writes")
        assert "/api/articles" in html.unescape(note["props"]["value"])
        refused = http.post("/gradio_api/upload", files={"files": ("seals.txt", SEALS.encode())})
        assert refused.status_code == 403 and "DOSSIER_AUTH" in refused.json()["error"], refused.text
        assert stored_by_gradio(gradio_cache, "seals.txt") == []
        assert http.delete("/api/articles/putin-gaza").status_code == 401
    client = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
    _, chat = client.predict(HAMAS, [], "", "", api_name="/chat")
    assert "36,000" in message_text(chat[-1]), "questions in the chat stay open (the start-up summary says so)"
    assert len(server.assistant.stored.articles()) == 10


def test_read_only_refuses_gradio_uploads(start_dossier: Any, gradio_cache: Path) -> None:
    server = start_dossier(read_only=True, auth="ann:correct-horse")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        login = {"username": (None, "ann"), "password": (None, "correct-horse")}  # multipart, as the login page sends
        assert http.post("/login", files=login).status_code == 200
        assert event_names(http) == CHAT_EVENTS
        for path in ("/gradio_api/upload", "/gradio_api/process_recording", "/gradio_api/component_server"):
            refused = http.post(path, files={"files": ("seals.txt", SEALS.encode())})
            assert refused.status_code == 403 and "read-only" in refused.json()["error"], (path, refused.text)
    assert stored_by_gradio(gradio_cache, "seals.txt") == []


def test_login_guards_every_chat_route(start_dossier: Any, gradio_cache: Path) -> None:
    server = start_dossier(auth="ann:correct-horse")
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        for method, path, body in ANONYMOUS_REFUSED:
            response = anonymous.request(method, path, **body)
            assert response.status_code == 401, (method, path, response.text)
        assert stored_by_gradio(gradio_cache, "seals.txt") == []
        page = anonymous.get("/")
        assert page.status_code == 200 and "auth_required" in page.text, "the login page stays reachable"
        asset = re.search(r"""["'](?:\./|/)?(assets/[^"']+\.js)["']""", page.text)
        assert asset is not None and anonymous.get("/" + asset.group(1)).status_code == 200
        assert anonymous.get("/theme.css").status_code == 200
        assert anonymous.get("/api/health").status_code == 200, "Dossier's own routes are not the chat's"
    with httpx.Client(base_url=server.url, timeout=60) as user:
        assert user.post("/login", data={"username": "ann", "password": "correct-horse"}).status_code == 200
        assert user.post("/gradio_api/cancel", json={"session_hash": "s", "fn_index": 1, "event_id": "e"}).is_success
        uploaded = user.post("/gradio_api/upload", files={"files": ("seals.txt", SEALS.encode())})
        assert uploaded.status_code == 200 and len(stored_by_gradio(gradio_cache, "seals.txt")) == 1
        assert event_names(user) >= WRITE_EVENTS, "with a login the chat takes uploads and removals"


def from_address(server: Any, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is this machine): another client to the server."""
    return httpx.Client(base_url=server.url, timeout=60, transport=httpx.HTTPTransport(local_address=address))


def test_wrong_passwords_lock_the_address_out_of_the_login(start_dossier: Any) -> None:
    server = start_dossier(auth="ann:correct-horse", login_max_failures=3, login_window_s=600, login_lockout_s=120)
    wrong, right = {"username": "ann", "password": "guess"}, {"username": "ann", "password": "correct-horse"}
    with from_address(server, "127.0.0.1") as attacker:
        statuses = [attacker.post("/login", data=wrong).status_code for _ in range(6)]
        assert statuses == [400, 400, 400, 429, 429, 429], statuses
        refused = attacker.post("/login/", data=right)
        assert refused.status_code == 429, "the right password waits too: that is what stops guessing"
        assert int(refused.headers["Retry-After"]) >= 1 and "try again in" in refused.json()["error"]
        assert "set-cookie" not in refused.headers
        multipart = attacker.post("/login", files={"username": (None, "ann"), "password": (None, "correct-horse")})
        assert multipart.status_code == 429, "the login page's own form is throttled the same way"
    with from_address(server, "127.0.0.2") as other:
        assert other.post("/login", data=right).status_code == 200, "another address is not locked out"
        assert other.get("/config").status_code == 200


def test_a_successful_login_clears_the_count(start_dossier: Any) -> None:
    server = start_dossier(auth="ann:correct-horse", login_max_failures=3, login_window_s=600, login_lockout_s=120)
    wrong, right = {"username": "ann", "password": "guess"}, {"username": "ann", "password": "correct-horse"}
    with from_address(server, "127.0.0.3") as user:
        for _ in range(2):  # two typos, then the password: five attempts, never three failures in a row
            assert [user.post("/login", data=wrong).status_code for _ in range(2)] == [400, 400]
            assert user.post("/login", data=right).status_code == 200


# -- the browser (conftest's `browser`) ------------------------------------------------------------


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


@pytest.fixture
def wiki(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Another web server on 127.0.0.1 (a different origin from Dossier's): (its URL, the folder it serves)."""
    folder = tmp_path / "wiki"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def ask_in_chat(page: Any, question: str, answers: int) -> Any:
    """Type a question, press Enter, wait for the `answers`-th finished answer; returns that answer's element."""
    box = page.locator("#dossier-question textarea, #dossier-question input").first
    box.fill(question)
    box.press("Enter")
    page.locator("#dossier-chatbot .dossier-answer:has(details)").nth(answers - 1).wait_for()
    return page.locator("#dossier-chatbot .dossier-answer:has(details)").nth(answers - 1)


@pytest.mark.browser
def test_browser_chat_answers_with_sources_and_stays_inert(start_dossier: Any, page: Any, xss_file: Path) -> None:
    server = start_dossier(extra=[xss_file])
    page.goto(server.url)
    answer = ask_in_chat(page, HAMAS, 1)
    assert "36,000" in answer.inner_text() and "[1]" in answer.inner_text()
    sources = answer.locator("details.dossier-sources")
    assert not sources.locator("blockquote").first.is_visible(), "sources start collapsed"
    sources.locator("summary").click()
    first = sources.locator("li.dossier-source").first
    assert first.locator("blockquote").is_visible()
    assert "Putin blames Washington" in first.inner_text() and "The Daily Ledger" in first.inner_text()
    assert "36,000" in first.locator("mark").inner_text()
    assert first.locator("a").get_attribute("href") == "https://example.org/daily-ledger/2024/06/06/putin-gaza-remarks"
    assert page.locator("#dossier-articles").inner_text().count("Putin blames") == 1  # the library lists the articles

    answer = ask_in_chat(page, LANTERNS, 2)
    answer.locator("details.dossier-sources summary").click()
    source = answer.locator("li.dossier-source").first
    source.locator("blockquote").wait_for()
    text = source.inner_text()
    assert "<script>window.__xss=1</script>" in text and 'onerror="window.__xss=1"' in text
    # The article's `javascript:` URL was dropped at ingest (issue 12): no link, the file's name instead.
    assert (
        "[click](javascript:window.__xss=1)" in text
        and "javascript:" not in source.locator(".dossier-source-head").inner_text()
    )
    assert source.locator("a").count() == 0 and "zephyr.txt" in source.locator(".dossier-source-head").inner_text()
    page.wait_for_timeout(500)  # give an injected handler (img onerror) the time to fire
    assert page.evaluate(NO_XSS) == CLEAN
    assert "<img src=x" in page.locator("#dossier-articles").inner_text()  # the title, as text in the library too


@pytest.mark.browser
def test_browser_login_page_then_chat(start_dossier: Any, page: Any) -> None:
    server = start_dossier(auth="ann:correct-horse", api_token="s3cret-token")
    page.goto(server.url)
    page.get_by_label("username").fill("ann")
    page.get_by_label("password").fill("correct-horse")
    page.get_by_role("button", name="Login").click()
    answer = ask_in_chat(page, HAMAS, 1)
    assert "36,000" in answer.inner_text()
    assert page.locator("#dossier-upload").is_visible(), "behind a login the chat takes uploads, token or not"


@pytest.mark.browser
def test_browser_embed_mode_in_an_iframe(demo_server: Any, page: Any, wiki: tuple[str, Path]) -> None:
    wiki_url, folder = wiki
    (folder / "sidebar.html").write_text(
        f'<!doctype html><title>Wiki</title><iframe id="dossier" src="{demo_server.url}/?embed=1" width="420" height="700"></iframe>'
    )
    page.goto(f"{wiki_url}/sidebar.html")
    frame = page.frame_locator("#dossier")
    frame.locator("#dossier-question textarea, #dossier-question input").first.wait_for()
    assert not frame.locator("#dossier-library").is_visible()
    box = frame.locator("#dossier-question textarea, #dossier-question input").first
    box.fill(HAMAS)
    box.press("Enter")
    frame.locator("#dossier-chatbot details.dossier-sources").wait_for()
    assert "36,000" in frame.locator("#dossier-chatbot").inner_text()
    page.goto(demo_server.url)
    page.locator("#dossier-library").wait_for()
    assert page.locator("#dossier-library").is_visible(), "the full page keeps its library"


@pytest.mark.browser
def test_browser_widget_from_another_origin(
    start_dossier: Any, page: Any, wiki: tuple[str, Path], xss_file: Path
) -> None:
    wiki_url, folder = wiki
    server = start_dossier(extra=[xss_file], cors_origins=wiki_url, api_token="wiki-token", read_only=True)
    (folder / "page.html").write_text(
        "<!doctype html><title>Wiki page</title><h1>Team wiki</h1>"
        f'<div data-dossier data-dossier-url="{server.url}" data-dossier-token="wiki-token"></div>'
        f'<script src="{server.url}/widget.js"></script>'
    )
    page.goto(f"{wiki_url}/page.html")
    widget = page.locator("[data-dossier] .dossier-widget")
    widget.locator("input").fill(HAMAS)
    widget.locator("button").click()
    widget.locator("ol.dossier-sources li").first.wait_for()
    assert "36,000" in widget.locator(".dossier-answer").inner_text()
    first = widget.locator("ol.dossier-sources li").first
    assert "Putin blames Washington" in first.inner_text() and "36,000" in first.locator("mark").inner_text()

    widget.locator("input").fill(LANTERNS)
    widget.locator("button").click()
    page.wait_for_function("document.querySelector('[data-dossier] .dossier-answer')?.textContent.includes('lanterns')")
    page.wait_for_timeout(500)
    assert "<script>window.__xss=1</script>" in widget.inner_text()
    assert widget.locator("ol.dossier-sources a").count() == 0, "a javascript: url is never a link"
    assert page.evaluate(NO_XSS) == CLEAN


@pytest.mark.browser
def test_browser_widget_refused_without_cors(demo_server: Any, page: Any, wiki: tuple[str, Path]) -> None:
    wiki_url, folder = wiki
    (folder / "page.html").write_text(
        f'<!doctype html><div data-dossier data-dossier-url="{demo_server.url}"></div><script src="{demo_server.url}/widget.js"></script>'
    )
    page.goto(f"{wiki_url}/page.html")
    widget = page.locator("[data-dossier] .dossier-widget")
    widget.locator("input").fill(HAMAS)
    widget.locator("button").click()
    page.locator("[data-dossier] .dossier-error").wait_for()
    error = page.locator("[data-dossier] .dossier-error").inner_text()
    assert "could not answer" in error and f"set DOSSIER_CORS_ORIGINS={wiki_url} on the server" in error, error
    assert widget.locator(".dossier-answer").count() == 0


@pytest.mark.browser
def test_browser_library_upload_and_remove(start_dossier: Any, page: Any, tmp_path: Path) -> None:
    server = start_dossier()
    seals = tmp_path / "seals.txt"
    seals.write_text(
        "title: Harbour seals counted\ndate: 2024-07-02\nsource: Bay Herald\n\nVolunteers counted 317 harbour seals.\n"
    )
    empty = tmp_path / "empty.md"
    empty.write_text("")
    page.goto(server.url)
    page.locator("#dossier-upload input[type=file]").set_input_files([str(seals), str(empty)])
    page.locator("#dossier-ingest").click()
    results = page.locator("#dossier-upload-result li")
    results.nth(1).wait_for()
    assert "seals.txt: added: upload/seals-" in results.nth(0).inner_text()
    assert "empty.md: skipped" in results.nth(1).inner_text() and "empty file" in results.nth(1).inner_text()
    page.locator("#dossier-articles", has_text="Harbour seals counted").wait_for()
    seals = next(a.id for a in server.assistant.stored.articles() if a.id.startswith("upload/seals-"))
    # The newest upload comes first in the library, before articles published later than it (November 2024).
    listed = page.locator("#dossier-articles").inner_text()
    assert listed.index("Harbour seals counted") < listed.index("Vasquez wins Port Averly")

    def remove(answer: bool) -> None:
        page.once("dialog", lambda dialog: dialog.accept() if answer else dialog.dismiss())
        page.locator("#dossier-remove-choice input").click()
        page.get_by_role("option", name=f"Harbour seals counted ({seals})").click()
        page.locator("#dossier-remove").click()

    remove(answer=False)  # removal asks first; cancelled, nothing goes
    page.get_by_text("Nothing removed").wait_for()
    assert seals in {a.id for a in server.assistant.stored.articles()}
    remove(answer=True)
    page.get_by_text(f"Removed {seals}").wait_for()
    assert "Harbour seals counted" not in page.locator("#dossier-articles").inner_text()
    assert seals not in {a.id for a in server.assistant.stored.articles()}
    assert page.locator("#dossier-upload-result").inner_text().strip() == ""  # the old "added" line is gone


ANSWERED = """() => {
    const answers = [...document.querySelectorAll('#dossier-chatbot .dossier-answer')];
    return answers.length > 0 && answers.every(answer => answer.querySelector('details'));
}"""


def ask_and_wait(page: Any, question: str) -> Any:
    """Ask, then wait until every answer in the chat is finished; returns the chat's answers."""
    box = page.locator("#dossier-question textarea, #dossier-question input").first
    box.fill(question)
    box.press("Enter")
    page.locator("#dossier-chatbot .dossier-message, #dossier-chatbot .message").first.wait_for()
    page.wait_for_function(ANSWERED)
    return page.locator("#dossier-chatbot .dossier-answer")


def test_the_date_filters_are_date_pickers(demo_server: Any) -> None:
    config = httpx.get(f"{demo_server.url}/config", timeout=30).json()
    kinds = {c.get("props", {}).get("elem_id"): c.get("type") for c in config["components"]}

    assert kinds["dossier-since"] == kinds["dossier-until"] == "datetime"


def test_the_page_points_to_the_json_api_not_gradio_s_events(demo_server: Any) -> None:
    config = httpx.get(f"{demo_server.url}/config", timeout=30).json()

    assert "api" not in config["footer_links"]  # Gradio's "Use via API" lists the chat's internal events
    footers = [str(c.get("props", {}).get("value", "")) for c in config["components"] if c.get("type") == "html"]
    assert any('href="/docs"' in html and "/api/ask" in html for html in footers)


# WCAG's contrast ratio of two rendered CSS colours ("rgb(r, g, b)" or "rgba(...)" over the page's background).
CONTRAST = """([fg, bg]) => {
    const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const lum = c => { const [r, g, b] = rgb(c).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                       return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""


@pytest.mark.browser
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_browser_the_highlighted_sentence_is_readable_in_both_themes(demo_server: Any, page: Any, theme: str) -> None:
    page.goto(f"{demo_server.url}/?__theme={theme}")
    answer = ask_in_chat(page, HAMAS, 1)
    answer.locator("details.dossier-sources summary").click()
    mark = answer.locator("li.dossier-source mark").first
    mark.wait_for()

    colours = mark.evaluate("m => [getComputedStyle(m).color, getComputedStyle(m).backgroundColor]")
    assert page.evaluate(CONTRAST, colours) >= 4.5, (theme, colours)  # WCAG AA for normal text


@pytest.mark.browser
def test_browser_an_example_question_is_asked(demo_server: Any, page: Any) -> None:
    page.goto(demo_server.url)
    page.get_by_text("Which rocket launched the Kestrel-1 weather satellite?", exact=True).click()

    page.wait_for_function(ANSWERED)
    assert "Aurora-3" in page.locator("#dossier-chatbot .dossier-answer").first.inner_text()


@pytest.mark.browser
@pytest.mark.parametrize("clear", ["the trash icon", "the clear button"])
def test_browser_clearing_forgets_the_conversation(demo_server: Any, page: Any, clear: str) -> None:
    page.goto(demo_server.url)
    trash = page.locator("#dossier-chatbot").get_by_role("button", name="Clear", exact=True)  # the Chatbot's own
    button = trash if clear == "the trash icon" else page.locator("#dossier-clear")
    ask_and_wait(page, HAMAS)
    button.click()
    page.locator("#dossier-chatbot .dossier-answer").first.wait_for(state="detached")
    answers = ask_and_wait(page, "And what did Israel say?")
    assert answers.count() == 1, "the cleared conversation does not come back"
    assert "Searched as" not in answers.first.inner_text(), "after clearing, a question is not read as a follow-up"
    button.click()
    page.locator("#dossier-chatbot .dossier-answer").first.wait_for(state="detached")
    page.locator("#dossier-retry").click()
    page.wait_for_timeout(1500)
    assert page.locator("#dossier-chatbot .dossier-answer").count() == 0, "retry does not bring back a cleared chat"


@pytest.mark.browser
def test_browser_copy_gives_plain_text_with_numbered_sources(demo_server: Any, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=demo_server.url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(demo_server.url)
    ask_in_chat(page, HAMAS, 1)
    bot = page.locator("#dossier-chatbot [aria-label^='bot']").last
    label = bot.get_attribute("aria-label") or ""
    assert "<" not in label and "36,000" in label, label
    user = page.locator("#dossier-chatbot [aria-label^='user']").last.get_attribute("aria-label") or ""
    assert "<" not in user and HAMAS in user, user
    page.locator("#dossier-chatbot").get_by_role("button", name="Copy message").last.click()
    page.wait_for_timeout(300)
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "<" not in copied and "&#" not in copied and "36,000" in copied and "[1]" in copied, copied
    assert "\nSources:\n[1] Putin blames Washington" in copied, copied
    assert "https://example.org/daily-ledger/2024/06/06/putin-gaza-remarks" in copied
    context.close()


IN_VIEW = """e => { const r = e.getBoundingClientRect();
    return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth; }"""


@pytest.mark.browser
@pytest.mark.parametrize("how", ["click", "keyboard"])
def test_browser_a_citation_marker_opens_its_source(demo_server: Any, page: Any, how: str) -> None:
    page.goto(demo_server.url)
    answer = ask_in_chat(page, "How many hectares has the Calder Ridge wildfire burned?", 1)
    sources = answer.locator("details.dossier-sources")
    assert sources.get_attribute("open") is None, "sources start collapsed"
    marker = answer.locator(".dossier-ref", has_text="[2]").first
    title = marker.get_attribute("title") or ""
    second = answer.locator("li.dossier-source").nth(1)
    assert title.startswith("Source 2: ") and second.locator("b").first.inner_text() in title, title

    if how == "click":
        marker.click()
    else:
        marker.focus()
        page.keyboard.press("Enter")

    page.wait_for_function("a => a.querySelector('details.dossier-sources').open", arg=answer.element_handle())
    mark = second.locator("mark")
    page.wait_for_timeout(300)  # the scroll
    assert mark.evaluate(IN_VIEW), "source 2's highlighted sentence is on screen"
    assert mark.inner_text() in title or mark.inner_text()[:40] in title, "the preview quotes the sentence"


@pytest.mark.browser
def test_browser_stop_ends_a_streaming_answer(start_dossier: Any, page: Any, fake_llm: Any) -> None:
    server = start_dossier(llm="openai:fake-model", openai_base_url=fake_llm.url)
    fake_llm.pause = 0.3  # the answer streams in word by word for several seconds
    try:
        page.goto(server.url)
        ask, stop = page.locator("#dossier-ask"), page.locator("#dossier-stop")
        ask.wait_for()
        assert ask.is_visible() and not stop.is_visible()
        box = page.locator("#dossier-question textarea").first
        box.fill(HAMAS)
        box.press("Enter")
        stop.wait_for(state="visible")
        assert not ask.is_visible(), "Stop takes Ask's place while the answer streams"
        page.wait_for_function(
            "() => (document.querySelector('#dossier-chatbot .dossier-answer')?.textContent || '').includes('Gaza')"
        )
        stop.click()
        page.locator("#dossier-chatbot .dossier-stopped").wait_for()
        ask.wait_for(state="visible")
        assert not stop.is_visible()
        streamed = page.locator("#dossier-chatbot .dossier-stopped").inner_text()
        page.wait_for_timeout(3000)  # the stream would have gone on, and ended with its sources
        assert page.locator("#dossier-chatbot .dossier-stopped").inner_text() == streamed, "nothing more arrives"
        assert page.locator("#dossier-chatbot details.dossier-sources").count() == 0
        assert "36,000" not in streamed and "Stopped" in streamed
        answer = ask_in_chat(page, "What did the ECB do?", 1)  # the chat goes on after a stop
        assert answer.is_visible() and stop.is_hidden()
    finally:
        fake_llm.pause = 0.0


@pytest.mark.browser
@pytest.mark.parametrize("size", [(360, 640), (420, 700)])
def test_browser_the_embed_fits_a_small_screen(demo_server: Any, browser: Any, size: tuple[int, int]) -> None:
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{demo_server.url}/?embed=1")
    box = page.locator("#dossier-question textarea").first
    box.wait_for()
    page.wait_for_timeout(500)  # autofocus scrolls the box into view if it is below the fold
    for part in (
        page.locator(".dossier-header h1"),
        box,
        page.locator("#dossier-ask"),
        page.locator("#dossier-chatbot"),
    ):
        assert part.evaluate(IN_VIEW), (part, part.evaluate("e => JSON.stringify(e.getBoundingClientRect())"))
    assert page.evaluate("window.scrollY") == 0
    context.close()


@pytest.mark.browser
def test_browser_upload_with_title_outlet_date_and_url(start_dossier: Any, page: Any, tmp_path: Path) -> None:
    server = start_dossier()
    notes = tmp_path / "notes.txt"
    notes.write_text("Volunteers counted 317 harbour seals on the sandbanks of the bay on Tuesday morning.\n")
    page.goto(server.url)
    page.locator("#dossier-upload-fields").get_by_text("Title, outlet, date, URL").click()
    assert "key: value" in page.locator("#dossier-upload-help").inner_text()  # the header format, documented here
    fill = {"title": "Seal census", "outlet": "Bay Herald", "date": "2024-07-02", "url": "javascript:alert(1)"}
    for name, value in fill.items():
        page.locator(f"#dossier-upload-{name} input, #dossier-upload-{name} textarea").first.fill(value)
    page.locator("#dossier-upload input[type=file]").set_input_files([str(notes)])
    page.locator("#dossier-ingest").click()
    page.locator("#dossier-upload-result .dossier-error").wait_for()
    assert "url 'javascript:alert(1)' is not a web address" in page.locator("#dossier-upload-result").inner_text()
    assert len(server.assistant.stored.articles()) == 10, "a bad field refuses the upload"

    url = page.locator("#dossier-upload-url input, #dossier-upload-url textarea").first
    url.fill("https://example.org/seals")
    page.locator("#dossier-ingest").click()
    page.locator("#dossier-articles", has_text="Seal census").wait_for()
    listed = page.locator("#dossier-articles").inner_text()
    row = listed[listed.index("Seal census") :].split("\n")[:4]  # its cells: title, outlet, date, chunks
    assert "Bay Herald" in row and "2024-07-02" in row, row
    result = page.locator("#dossier-upload-result").inner_text()
    assert "notes.txt: added" in result and "has no date" not in result, result
    (record,) = [a for a in server.assistant.stored.articles() if a.title == "Seal census"]
    assert (record.source, record.published, record.url) == ("Bay Herald", "2024-07-02", "https://example.org/seals")
    assert url.input_value() == "", "the fields were for that upload only"


def test_the_chat_s_hashed_scripts_are_cached_for_good(demo_server: Any) -> None:
    page = httpx.get(demo_server.url + "/", timeout=30).text
    script = re.search(r"assets/[\w.-]+\.js", page)
    assert script is not None, page[:500]
    asset = httpx.get(f"{demo_server.url}/{script.group(0)}", timeout=30)
    assert asset.status_code == 200 and asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    missing = httpx.get(f"{demo_server.url}/assets/no-such-file.js", timeout=30)
    assert missing.status_code != 200 and "immutable" not in missing.headers.get("cache-control", "")
    assert "immutable" not in httpx.get(f"{demo_server.url}/config", timeout=30).headers.get("cache-control", "")
