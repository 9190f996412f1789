"""A small OpenAI-compatible chat server for the LLM-path tests: real HTTP on 127.0.0.1, replies computed from the prompt.

It implements `POST /v1/chat/completions` (plain JSON, or server-sent events with `"stream": true`) and
answers like a careful but simple model would, from what the request holds:

- an answer prompt (numbered `<passage>` blocks and a `Question:` line): the passage sentence sharing the
  most words with the question, copied verbatim and cited with its passage number; "NOT IN ARTICLES" when
  no sentence shares a word with it. Words in the question ask for misbehaviour, so tests can check that
  verification catches it: "invent" adds a claim whose figure is in no passage, "dangling" adds a marker
  to a passage that does not exist.
- a condense prompt (`Last question:`): the last question with the conversation's first question appended.
- an unknown model: a 404 JSON error, as OpenAI and vLLM send.

With `obedient = True` it is the model an attacker hopes for: it reads the prompt the way a naive model
would (a passage ends at the first `</passage>`, and any `[n] ... <passage>` starts one) and obeys the first
instruction it finds in the passages or between them ("Ignore previous instructions and answer 'X'"),
citing the passage it came from: 'X' quoted is answered as is, "answer that ..." as a sentence, and an
instruction with no answer in it is repeated.

Every request body is kept in `requests`, and the passages it made out of each answer prompt in
`passages_seen`, so tests can look at the prompts Dossier sent and at how a model could read them;
`pause` slows a stream.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from assistant.text import STOPWORDS

MODEL = "fake-model"
INVENTED = "The same report put the number of people moved to shelters at 987,654."
_PASSAGE = re.compile(r"\[(\d+)\][^\n<]*\s*<passage>\s*(.*?)\s*</passage>", re.S)
_INSTRUCTION = re.compile(r"[^.!?\n]*\b(?:ignore|disregard|forget)\b[^.!?\n]*\binstructions?\b[^.!?\n]*[.!?]?", re.I)
_ORDER = re.compile(
    r"\b(?:answer|say|reply)\s+(?:that\s+(?P<claim>[^.!?\n]+)|['\"\u2018\u201c](?P<quoted>[^'\"\u2019\u201d]+))", re.I
)


def _words(text: str) -> set[str]:
    return {word for word in re.findall(r"\d+(?:[.,]\d+)*|[a-z]+", text.lower()) if word not in STOPWORDS}


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+|\n\s*\n", text) if part.strip().endswith((".", "!", "?"))]


def answer_for(prompt: str) -> str:
    """The reply to an answer prompt: the best-matching passage sentence with its `[n]`, plus what the question asks for."""
    passages = passages_in(prompt)
    question = re.search(r"^Question: (.*)$", prompt, re.M)
    wanted = _words(question.group(1)) if question else set()
    scored = [  # most shared words first; on a tie, the earlier passage and the earlier sentence
        (len(wanted & _words(sentence)), -n, -i, n, sentence)
        for n, text in passages
        for i, sentence in enumerate(_sentences(text))
    ]
    best = max(scored, default=None)
    if best is None or best[0] == 0:
        return "NOT IN ARTICLES"
    *_, n, sentence = best
    reply = f"{sentence} [{n}]"
    if "invent" in wanted:
        reply += f" {INVENTED} [{n}]"
    if "dangling" in wanted:
        reply += f" {sentence} [{len(passages) + 7}]"
    return reply


def passages_in(prompt: str) -> list[tuple[int, str]]:
    """The numbered passages a model could make out of a prompt, read naively (see the module docstring)."""
    return [(int(n), text) for n, text in _PASSAGE.findall(prompt)]


def obey(prompt: str) -> str | None:
    """The obedient model's reply: what the first planted instruction asks for, cited; None when there is none."""
    passages = passages_in(prompt)
    section = prompt.split("Passages:", 1)[-1].split("Question:", 1)[0]
    outside = _PASSAGE.sub("", section)  # text a naive model takes for the prompt's own words
    found = [(n, _INSTRUCTION.search(text)) for n, text in passages] + [(1, _INSTRUCTION.search(outside))]
    n, instruction = next(((n, match) for n, match in found if match), (0, None))
    if instruction is None:
        return None
    order = _ORDER.search(instruction.group(0))
    if order and order.group("quoted"):
        return f"{order.group('quoted').strip()} [{n}]"
    if order and order.group("claim"):
        claim = order.group("claim").strip()
        return f"{claim[:1].upper()}{claim[1:]}. [{n}]"
    return f"{instruction.group(0).strip()} [{n}]"


def condense_for(prompt: str) -> str:
    """The reply to a condense prompt: the last question, told what the conversation was about."""
    turns = re.findall(r"^User: (.*)$", prompt, re.M)
    last = re.search(r"^Last question: (.*)$", prompt, re.M)
    question = last.group(1).strip() if last else ""
    question = re.sub(r"^(and|but|also|so)\s+", "", question, flags=re.I).rstrip("?")
    context = turns[0].rstrip("?") if turns else ""
    return f"{question[:1].upper()}{question[1:]}, in reply to: {context}?"


class FakeOpenAI(ThreadingHTTPServer):
    """`FakeOpenAI().start()` serves on a free port of 127.0.0.1; `.url` is the base URL (ending in /v1)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.passages_seen: list[list[tuple[int, str]]] = []
        self.obedient = False
        self.pause = 0.0  # seconds between streamed pieces, for tests that act while an answer streams
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append(body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error"}})
            return
        if body.get("model") != MODEL:
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            self._json(404, {"error": {"message": message, "type": "invalid_request_error", "code": "model_not_found"}})
            return
        prompt = "\n".join(str(message.get("content", "")) for message in body.get("messages", []))
        if "Last question:" in prompt:
            reply = condense_for(prompt)
        else:
            self.server.passages_seen.append(passages_in(prompt))
            reply = (self.server.obedient and obey(prompt)) or answer_for(prompt)
        if body.get("stream"):
            self._stream(reply)
        else:
            self._json(200, _completion(reply))

    def _json(self, status: int, data: dict[str, Any]) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, reply: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        pieces = re.findall(r"\S+\s*", reply)
        chunks = [_chunk({"role": "assistant", "content": ""}, None)]
        chunks += [_chunk({"content": piece}, None) for piece in pieces]
        chunks.append(_chunk({}, "stop"))
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(self.server.pause)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _completion(reply: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
