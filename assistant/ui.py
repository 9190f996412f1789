"""The browser chat (Gradio Blocks): streamed answers with their sources, filters, and the library panel.

Every piece of article text (titles, passages, answer sentences, file names) is untrusted. It is
HTML-escaped here, and Markdown's characters are turned into character references, before any tag of
ours (`<mark>`, `<details>`) is added; the whole message is one HTML block without blank lines, so
Markdown never parses article text. Gradio's own sanitizing is a second fence, not the first.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from assistant.access import Access
from assistant.dates import human_date
from assistant.errors import DossierError
from assistant.filters import Filters
from assistant.library import ALLOWED_SUFFIXES, Library, Upload, UploadResult, upload_fields
from assistant.models import LOW_CONFIDENCE, Answer, Citation, Passage, is_file_path
from assistant.settings import Settings
from assistant.text import clean_untrusted

# HTML's special characters, and those Markdown (or the chat's LaTeX and emoji rendering) could read as syntax,
# as character references, in one pass (a second pass would mangle the first one's `&#...;`).
_INERT = {ord(c): f"&#{ord(c)};" for c in "&<>\"'\\`*_{}[]()#+-.!|~$:@="}
_MARKER = re.compile(r"\[(\d+)\]")
MAX_PREVIEW_CHARS = 160  # a marker's tooltip: the title and the start of the sentence, not the passage
log = logging.getLogger(__name__)

CSS = """
.dossier-header h1 { margin: 0; font-size: 1.6rem; }
.dossier-header p { margin: .2rem 0 0; opacity: .8; }
.dossier-badge { display: inline-block; padding: 0 .5rem; border-radius: .6rem; background: var(--color-accent-soft); font-size: .85rem; }
.dossier-answer p { margin: 0 0 .5rem; }
.dossier-ref { font-size: .8em; vertical-align: super; color: var(--color-accent); font-weight: 600; }
.dossier-ref-link { cursor: pointer; position: relative; border-radius: .2rem; }
.dossier-ref-link:hover, .dossier-ref-link:focus-visible { text-decoration: underline; }
.dossier-ref-link:focus-visible::after { content: attr(title); position: absolute; left: 0; top: 1.4em; z-index: 10; width: max-content; max-width: 18rem; padding: .3rem .5rem; border-radius: .3rem; background: var(--background-fill-secondary); color: var(--body-text-color); border: 1px solid var(--border-color-primary); font-size: .8rem; font-weight: 400; white-space: normal; }
.dossier-source-shown .dossier-passage { border-left-color: var(--color-accent); }
.dossier-note { opacity: .75; font-size: .9em; }
.dossier-sources { margin-top: .4rem; }
.dossier-sources summary { cursor: pointer; font-weight: 600; }
.dossier-source { margin: .5rem 0; }
.dossier-source-head { font-size: .9em; }
.dossier-passage { margin: .3rem 0 0; padding: .3rem .6rem; border-left: 3px solid var(--border-color-primary); font-size: .88em; white-space: normal; }
.dossier-passage mark { background: #fde68a; color: #1c1917; padding: 0 .1rem; }
.dossier-removed { margin-top: .4rem; font-size: .88em; opacity: .85; }
.dossier-removed del { text-decoration-color: #dc2626; }
.dossier-error { color: #b91c1c; }
.dark .dossier-error { color: #fca5a5; }
.dark .dossier-removed del { text-decoration-color: #f87171; }
.dossier-footer { margin-top: .8rem; font-size: .85rem; opacity: .8; text-align: center; }
#dossier-articles table, #dossier-articles td, #dossier-articles th, #dossier-articles span { font-family: var(--font) !important; font-size: .85rem; }
#dossier-articles th, #dossier-articles th span { white-space: nowrap; word-break: keep-all; }
.dossier-embed #dossier-library, .dossier-embed .dossier-full-only, .dossier-embed footer { display: none !important; }
.dossier-embed .dossier-header h1 { font-size: 1.1rem !important; line-height: 1.3 !important; }
.dossier-embed .dossier-header p { display: none; }
.dossier-embed .gradio-container { padding: 4px !important; }
/* The embed fits its frame (a wiki sidebar, a phone): the header, the chat, the question box and its buttons
   on one screen down to 360x640: the chat takes the height the others (about 210px) leave. */
.dossier-embed .gradio-container .main { padding: 4px 6px !important; }
.dossier-embed .gradio-container .column, .dossier-embed .gradio-container .row { gap: 8px !important; }
.dossier-embed #dossier-chatbot { height: clamp(160px, calc(100vh - 210px), 520px) !important; }
.dossier-embed #dossier-question { padding: 4px 6px !important; }
.dossier-embed #dossier-retry, .dossier-embed #dossier-clear { min-width: 0 !important; flex: 1 1 0 !important; }
"""

# Next to the upload control: the header the text loader reads (ingest.loaders.split_front_matter).
HEADER_HELP = """Optional: a title, outlet, date or URL typed here applies to every file of this upload and \
replaces what the files say. A `.txt` or `.md` file can carry them itself, as `key: value` lines at its top \
followed by a blank line:

```
title: Harbour seals counted
date: 2024-07-02
source: Bay Herald
url: https://example.org/seals
author: A. Writer

The article's text ...
```

(`outlet:` works as `source:`, `published:` as `date:`; HTML, PDF and JSON files give theirs in their own fields.)"""

API_FOOTER = (
    '<footer class="dossier-footer">Use via API: <code>POST /api/ask</code> with <code>{"question": "..."}</code>, '
    'documented at <a href="/docs">/docs</a>.</footer>'
)

# Asks before a removal; a cancelled one reaches the server as no choice at all.
CONFIRM_REMOVAL = "(choice) => (choice && window.confirm(`Remove ${choice} and all its chunks?`)) ? choice : null"

# Runs before the page renders: `?embed=1` switches on the compact layout without a flash of the full one.
# Then: Gradio copies a message, and labels it for screen readers, with its content, which for Dossier is HTML.
# Each message carries its plain text in `data-dossier-copy` (see `answer_plain`); the clipboard (both ways
# Gradio writes to it) and the messages' aria-labels get that text instead. The HTML is parsed by DOMParser,
# which runs no script and loads nothing, and nothing parsed is put into the page.
# Last: a click on a citation marker `[n]` (or Enter or Space on it) opens its answer's sources and scrolls
# source n's highlighted sentence into view. It reads only the marker's digits, never the article's text.
HEAD = """<script>
if (new URLSearchParams(window.location.search).get("embed") === "1") {
  document.documentElement.classList.add("dossier-embed");
}
(function () {
  var ATTRIBUTE = "data-dossier-copy";
  function plain(text) {
    if (typeof text !== "string" || text.indexOf(ATTRIBUTE + "=") < 0) return text;
    var node = new DOMParser().parseFromString(text, "text/html").querySelector("[" + ATTRIBUTE + "]");
    return node ? node.getAttribute(ATTRIBUTE) : text;
  }
  var clipboard = navigator.clipboard;
  if (clipboard && clipboard.writeText) {
    var write = clipboard.writeText.bind(clipboard);
    clipboard.writeText = function (text) { return write(plain(text)); };
  }
  document.addEventListener("copy", function (event) {  // Gradio's fallback: a hidden textarea and execCommand
    var areas = document.querySelectorAll("body > textarea");
    for (var i = 0; i < areas.length; i++) {
      if (areas[i].value.indexOf(ATTRIBUTE + "=") >= 0) {
        event.clipboardData.setData("text/plain", plain(areas[i].value));
        event.preventDefault();
        return;
      }
    }
  });
  function relabel() {
    var labelled = document.querySelectorAll("[aria-label*='" + ATTRIBUTE + "=']");
    for (var i = 0; i < labelled.length; i++) {
      var label = labelled[i].getAttribute("aria-label"), at = label.indexOf("<");
      labelled[i].setAttribute("aria-label", label.slice(0, at) + plain(label.slice(at)));
    }
  }
  new MutationObserver(relabel).observe(document.documentElement, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["aria-label"]
  });
})();
(function () {  // a citation marker [n] opens its answer's sources and brings source n's sentence into view
  function follow(marker) {
    var n = (marker.textContent.match(/^\\[(\\d+)\\]$/) || [])[1];
    var answer = marker.closest(".dossier-answer");
    var sources = answer && answer.querySelector("details.dossier-sources");
    var source = n && sources && sources.querySelector('li.dossier-source[value="' + n + '"]');
    if (!source) return;
    sources.open = true;
    var shown = answer.querySelectorAll(".dossier-source-shown");
    for (var i = 0; i < shown.length; i++) shown[i].classList.remove("dossier-source-shown");
    source.classList.add("dossier-source-shown");
    (source.querySelector("mark") || source).scrollIntoView({block: "center"});
  }
  function marker(event) {
    return event.target.closest ? event.target.closest(".dossier-ref-link") : null;
  }
  document.addEventListener("click", function (event) {
    var found = marker(event);
    if (found) { event.preventDefault(); follow(found); }
  });
  document.addEventListener("keydown", function (event) {
    var found = (event.key === "Enter" || event.key === " ") && marker(event);
    if (found) { event.preventDefault(); follow(found); }
  });
})();
</script>"""


# -- rendering -------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text made inert for the chat: HTML-escaped, Markdown syntax as character references, newlines as <br>."""
    return re.sub(r"\r?\n", "<br>", text.translate(_INERT))


def copy_attribute(text: str) -> str:
    """` data-dossier-copy="..."`: a message's plain text for the clipboard and screen readers (see HEAD), inert."""
    value = re.sub(r"\r?\n", "&#10;", text.translate(_INERT))  # no line break: the message stays one HTML block
    return f' data-dossier-copy="{value}"'


def safe_link(target: str) -> str:
    """An `<a>` for http(s) URLs; anything else (a stored file path, `javascript:`) is shown as text."""
    if not target:
        return ""
    parts = urlsplit(target.strip())
    if parts.scheme in {"http", "https"} and parts.netloc:
        href = html.escape(target.strip(), quote=True)
        return f'<a href="{href}" target="_blank" rel="noopener noreferrer nofollow">{escape(parts.netloc)}</a>'
    return f'<code title="where the article came from">{escape(target)}</code>'


def highlight(passage: str, sentence: str) -> str:
    """The passage, escaped, with the supporting sentence inside `<mark>` (found exactly or up to whitespace)."""
    if sentence:
        start = passage.find(sentence)
        if start >= 0:
            end = start + len(sentence)
        else:
            words = sentence.split()
            found = re.search(r"\s+".join(map(re.escape, words)), passage) if words else None
            start, end = (found.start(), found.end()) if found else (-1, -1)
        if start >= 0:
            return f"{escape(passage[:start])}<mark>{escape(passage[start:end])}</mark>{escape(passage[end:])}"
    return escape(passage)


def _when(published: str) -> str:
    try:
        return human_date(published) if published else ""
    except ValueError:
        return published


def _source_head(title: str, source: str, published: str, link: str, page: int | None = None, file: str = "") -> str:
    details = [escape(part) for part in (source, _when(published)) if part]
    if page:
        details.append(f"p. {page}")
    if link:
        details.append(safe_link(link))
    elif file:  # no URL: the file's name says where the article came from, as text (never the server's path)
        details.append(f'<span class="dossier-file" title="the article\'s file">{escape(file)}</span>')
    return f"<b>{escape(title or 'Untitled')}</b>" + (" · " + " · ".join(details) if details else "")


def _citation(citation: Citation, file: str = "") -> str:
    url = "" if is_file_path(citation.url) else citation.url
    head = _source_head(citation.title, citation.source, citation.published, url, citation.page, file)
    return (
        f'<li class="dossier-source" value="{citation.n}"><div class="dossier-source-head">{head}</div>'
        f'<blockquote class="dossier-passage">{highlight(citation.passage, citation.sentence)}</blockquote></li>'
    )


def _closest(passage: Passage) -> str:
    head = _source_head(passage.title, passage.source, passage.published, passage.link, passage.page, passage.file_name)
    return (
        f'<li class="dossier-source"><div class="dossier-source-head">{head}</div>'
        f'<blockquote class="dossier-passage">{escape(passage.text)}</blockquote></li>'
    )


def _preview(citation: Citation) -> str:
    """A marker's hover and focus preview: the source's title and its supporting sentence, cut short."""
    text = f"{citation.title or 'Untitled'}: \u201c{citation.sentence}\u201d"
    return text if len(text) <= MAX_PREVIEW_CHARS else text[: MAX_PREVIEW_CHARS - 1].rstrip() + "\u2026"


def _marker(n: str, previews: dict[int, str]) -> str:
    """`[n]`; a marker with a source is a link to it (mouse or keyboard), followed by HEAD's script.

    Gradio's sanitizer keeps `role`, `tabindex`, `title` and the sources' `<li value>` but drops `data-*`
    attributes, so the script reads the number from the marker's text and finds the `<li>` by its value.
    """
    preview = previews.get(int(n))
    if preview is None:  # a marker without a source has nowhere to go
        return f'<span class="dossier-ref">[{n}]</span>'
    title = re.sub(r"\s+", " ", preview).translate(_INERT)
    return (
        f'<span class="dossier-ref dossier-ref-link" role="link" tabindex="0" title="Source {n}: {title}">[{n}]</span>'
    )


def _answer_text(text: str, previews: dict[int, str] | None = None) -> str:
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        pieces = _MARKER.split(paragraph)
        # split() alternates text and captured marker numbers
        body = "".join(
            escape(piece) if i % 2 == 0 else _marker(piece, previews or {}) for i, piece in enumerate(pieces)
        )
        css = ' class="dossier-note"' if paragraph.startswith("Note:") else ""
        paragraphs.append(f"<p{css}>{body}</p>")
    return "".join(paragraphs)


def confidence_note(answer: Answer) -> str:
    """A warning for an answer the reader is unsure of (its probability under `LOW_CONFIDENCE`), else ""."""
    if answer.abstained or answer.confidence is None or answer.confidence >= LOW_CONFIDENCE:
        return ""
    return f"Low confidence ({answer.confidence:.0%}): the sources may not answer exactly this; check them."


def _files(answer: Answer) -> dict[str, str]:
    """Article id -> file name, from the passages the answer read (a citation names its article, not its file)."""
    return {p.article_id: p.file_name for p in (*answer.retrieved, *answer.closest) if p.file_name}


def _plain_source(title: str, details: list[str]) -> str:
    return (title or "Untitled") + "".join(f", {part}" for part in details if part)


def answer_plain(answer: Answer) -> str:
    """The answer as plain text, for the clipboard and screen readers: the text with its `[n]` markers, then the
    numbered sources, each with its outlet, date, URL (or file name) and supporting sentence."""
    blocks = [answer.text.strip()]
    if note := confidence_note(answer):
        blocks.append(note)
    if answer.rewritten_question:
        blocks.append(f"Searched as: {answer.rewritten_question}")
    if answer.removed:
        blocks.append(
            "Removed, not supported by the cited passages:\n" + "\n".join(f"- {s.text}" for s in answer.removed)
        )
    files = _files(answer)
    if answer.citations:
        lines = ["Sources:"]
        for c in answer.citations:
            where = "" if is_file_path(c.url) else c.url
            page = f"p. {c.page}" if c.page else ""
            lines.append(
                f"[{c.n}] "
                + _plain_source(c.title, [c.source, _when(c.published), page, where or files.get(c.article_id, "")])
            )
            lines.append(f'    "{c.sentence}"')
        blocks.append("\n".join(lines))
    elif answer.abstained and answer.closest:
        lines = ["Closest passages:"]
        for p in answer.closest:
            lines.append("- " + _plain_source(p.title, [p.source, _when(p.published), p.link or p.file_name]))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def answer_html(answer: Answer) -> str:
    """One chat message: the answer with `[n]` markers, removed sentences, and a collapsible Sources part."""
    previews = {citation.n: _preview(citation) for citation in answer.citations}
    text = _answer_text(answer.text, previews)
    parts = [f'<div class="dossier-answer"{copy_attribute(answer_plain(answer))}>{text}']
    if note := confidence_note(answer):
        parts.append(f'<p class="dossier-note dossier-low-confidence">{escape(note)}</p>')
    if answer.rewritten_question:
        parts.append(f'<p class="dossier-note">Searched as: {escape(answer.rewritten_question)}</p>')
    if answer.removed:
        items = "".join(f"<li><del>{escape(sentence.text)}</del></li>" for sentence in answer.removed)
        parts.append(
            f'<div class="dossier-removed">Removed, not supported by the cited passages:<ul>{items}</ul></div>'
        )
    if answer.citations:
        files = _files(answer)
        items = "".join(_citation(citation, files.get(citation.article_id, "")) for citation in answer.citations)
        parts.append(
            f'<details class="dossier-sources"><summary>Sources ({len(answer.citations)})</summary><ol>{items}</ol></details>'
        )
    elif answer.abstained and answer.closest:
        items = "".join(_closest(passage) for passage in answer.closest)
        parts.append(
            f'<details class="dossier-sources" open><summary>Closest passages ({len(answer.closest)})</summary><ul>{items}</ul></details>'
        )
    parts.append("</div>")
    return "".join(parts)


def error_html(message: str) -> str:
    said = f"Sorry, I could not answer: {message}"
    return f'<div class="dossier-error"{copy_attribute(said)}>{escape(said)}</div>'


def streaming_html(text: str) -> str:
    return f'<div class="dossier-answer"{copy_attribute(text + " …")}><p>{escape(text)} …</p></div>'


def stopped_html(text: str) -> str:
    """An answer stopped while it streamed: what had arrived, marked as stopped (it has no checked sources)."""
    said = f"{text} (stopped)" if text else "Stopped before an answer arrived."
    shown = f"<p>{escape(text)}</p>" if text else ""
    note = "Stopped: this partial answer was not checked against its sources." if text else said
    return f'<div class="dossier-answer dossier-stopped"{copy_attribute(said)}>{shown}<p class="dossier-note">{escape(note)}</p></div>'


def question_html(question: str) -> str:
    return f"<div{copy_attribute(question)}>{escape(question)}</div>"


def results_html(results: list[UploadResult]) -> str:
    """Per-file outcome of an upload, escaped (file names are untrusted too)."""
    if not results:
        return ""
    rows = []
    for result in results:
        what = result.status + (f": {', '.join(result.articles)}" if result.articles else "")
        reason = "".join(f" — {text}" for text in (*result.notes, result.reason) if text)
        rows.append(f"<li><b>{escape(result.name)}</b>: {escape(what + reason)}</li>")
    return f'<ul class="dossier-upload-results">{"".join(rows)}</ul>'


def header_html(answerer: str) -> str:
    return (
        '<div class="dossier-header"><h1>Dossier</h1>'
        "<p>Ask the news articles. Every claim carries a numbered source you can check. "
        f'<span class="dossier-badge">answerer: {escape(answerer)}</span></p></div>'
    )


# -- the app ---------------------------------------------------------------------------------------


def not_received(path: Path, folder: Path, received: Collection[str]) -> str:
    """Why the chat must not read `path` as an uploaded file, or "" when Gradio received it through its upload route.

    Gradio hands the upload event whatever path the caller names (a script can name `/etc/passwd`, or a
    file Gradio fetched or cached for another reason), so the path alone proves nothing. Only a regular
    file, not a symbolic link, inside Gradio's upload `folder` and in `received` (the paths Gradio's upload
    route wrote, `Blocks.upload_file_set`) is one the chat's user sent.
    """
    if path.is_symlink():
        return "not read: a symbolic link, not a file uploaded from the page"
    if not path.is_file():
        return "not read: no uploaded file at that path"
    if not path.resolve().is_relative_to(folder):
        return "not read: outside the chat's upload folder; upload the file from the page"
    if os.path.abspath(path) not in {os.path.abspath(item) for item in list(received)}:
        return "not read: the server did not receive it through the chat's upload; upload the file from the page"
    return ""


def parse_filters(sources: list[str] | None, since: str | None, until: str | None) -> Filters:
    """Filters from the chat's controls; a malformed date is the user's mistake, said in one line."""
    return Filters.parse(sources or (), since=since, until=until)


def _messages(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    chat: list[dict[str, str]] = []
    for turn in turns:
        chat.append({"role": "user", "content": question_html(turn["question"])})
        chat.append({"role": "assistant", "content": turn["html"]})
    return chat


def _history(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    history: list[dict[str, str]] = []
    for turn in turns:
        if turn.get("answer"):
            history += [{"role": "user", "content": turn["question"]}, {"role": "assistant", "content": turn["answer"]}]
    return history


def _table(records: list[Any]) -> list[list[Any]]:
    return [[r.title, r.source, r.published, r.chunks] for r in records]


def build_ui(assistant: Any, library: Library, settings: Settings) -> Any:
    """The chat page. `assistant` is an `Assistant`; uploads and removals go through `library` when `Access` allows.

    >>> demo = build_ui(assistant, Library(assistant.stored, settings), settings)   # doctest: +SKIP
    """
    return ChatPage(assistant, library, settings).build()


class ChatPage:
    """The chat page: its event handlers (ask, stop, retry, upload, remove...), its layout, and their wiring."""

    def __init__(self, assistant: Any, library: Library, settings: Settings) -> None:
        from gradio.utils import get_upload_folder

        self.assistant = assistant
        self.library = library
        self.settings = settings
        self.access = Access.from_settings(settings)
        self.gradio_uploads = Path(get_upload_folder()).resolve()
        self.demo: Any = None

    # -- handlers --------------------------------------------------------------------------------

    def ask(
        self,
        question: str,
        turns: list[dict[str, str]],
        sources: list[str] | None,
        since: str,
        until: str,
        answerer: str | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        import gradio as gr

        question = clean_untrusted(question or "").strip()  # shown in the conversation before the Assistant sees it
        if not question:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        turns = list(turns or [])
        history = _history(turns)
        # "streamed" is there while the answer streams in: Stop (which ends this generator) shows what had come.
        turn = {"question": question, "answer": "", "html": streaming_html(""), "streamed": ""}
        turns.append(turn)
        yield "", _messages(turns), turns
        try:
            filters = parse_filters(sources, since, until)
            text = ""
            for piece in self.assistant.stream(question, history, filters=filters, answerer=answerer or None):
                if isinstance(piece, str):
                    text += piece
                    turn["html"], turn["streamed"] = streaming_html(text), text
                    yield "", _messages(turns), turns
                else:
                    turn["answer"], turn["html"] = piece.text, answer_html(piece)
        except DossierError as exc:
            turn["html"] = error_html(str(exc))
        except Exception:  # a bug, not the user's doing: log it, keep the conversation usable
            log.exception("answering %r failed", question)
            turn["html"] = error_html("something went wrong on the server (see its log); try again or rephrase")
        del turn["streamed"]
        yield "", _messages(turns), turns

    def stop(self, turns: list[dict[str, str]]) -> tuple[Any, ...]:
        turns = list(turns or [])
        if turns and "streamed" in turns[-1]:
            last = dict(turns[-1])
            last["html"] = stopped_html(last.pop("streamed"))
            turns[-1] = last
        return (_messages(turns), turns, *self.idle())

    def retry(
        self,
        turns: list[dict[str, str]],
        sources: list[str] | None,
        since: str,
        until: str,
        answerer: str | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        import gradio as gr

        if not turns:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        yield from self.ask(turns[-1]["question"], turns[:-1], sources, since, until, answerer)

    @staticmethod
    def busy() -> tuple[Any, ...]:
        import gradio as gr

        return gr.update(visible=False), gr.update(visible=True)

    @staticmethod
    def idle() -> tuple[Any, ...]:
        import gradio as gr

        return gr.update(visible=True), gr.update(visible=False)

    def refresh(self) -> tuple[Any, ...]:
        import gradio as gr

        # The library panel lists what was added last first: a new upload (often undated) is where one looks.
        records = sorted(self.library.articles(), key=lambda r: (r.ingested_at, r.published), reverse=True)
        choices = [(f"{r.title} ({r.id})", r.id) for r in records]
        return (
            _table(records),
            gr.update(choices=self.library.sources()),
            gr.update(choices=choices, value=None),
        )

    def upload(
        self,
        paths: list[str] | None,
        title: str,
        outlet: str,
        published: str,
        url: str,
        progress: Any = None,
    ) -> tuple[Any, ...]:
        import gradio as gr

        try:
            fields = upload_fields(title, outlet, published, url)
        except DossierError as exc:  # the files stay chosen, to upload again once the field is mended
            return (error_html(str(exc)), gr.skip(), *self.refresh(), *[gr.skip()] * 4)
        received = self.demo.upload_file_set
        checked = [(Path(p), not_received(Path(p), self.gradio_uploads, received)) for p in paths or []]
        uploads = [Upload(name=f.name, size=f.stat().st_size, content=f) for f, refused in checked if not refused]

        def report(done: int, total: int, name: str) -> None:
            if progress is not None:
                progress((done, total), desc=f"ingesting {name}" if name else "done", unit="files")

        try:
            ingested = iter(self.library.add(uploads, progress=report, strict=False, fields=fields))
            results = [
                UploadResult(f.name, "skipped", reason=refused) if refused else next(ingested) for f, refused in checked
            ]
            message = results_html(results) or "<p>Choose files first.</p>"
        except DossierError as exc:
            message = error_html(str(exc))
        return (message, None, *self.refresh(), "", "", "", "")  # the fields were for these files only

    def remove(self, article_id: str | None) -> tuple[Any, ...]:
        # The upload's result is cleared either way: an old "added" line next to "Removed" misleads.
        if not article_id:
            return ("<p>Nothing removed: choose an article, then confirm.</p>", "", *self.refresh())
        try:
            count = self.library.remove(article_id)
            message = f"<p>Removed {escape(article_id)} ({count} chunks).</p>"
        except DossierError as exc:
            message = error_html(str(exc))
        return (message, "", *self.refresh())

    # -- layout and wiring ---------------------------------------------------------------------------

    def build(self) -> Any:
        import gradio as gr

        with gr.Blocks(title="Dossier", analytics_enabled=False) as self.demo:
            self.turns = gr.State([])
            gr.HTML(header_html(self.assistant.answerer_name))
            # The configured answerers to choose from (the configured LLM and the extractive one); with only the
            # extractive one there is nothing to choose, and the header's badge says which answers.
            self.answerer = gr.Radio(
                self.assistant.answerers,
                value=self.assistant.answerer_name,
                label="Answerer",
                visible=len(self.assistant.answerers) > 1,
                elem_id="dossier-answerer",
            )
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, elem_id="dossier-chat"):
                    self._chat_column()
                with gr.Column(scale=2, elem_id="dossier-library"):
                    self._library_column()
            # Gradio's own "Use via API" would point at the chat's internal events; the API to use is /api/ask.
            gr.HTML(API_FOOTER, elem_classes=["dossier-full-only"])
            self._wire_chat()
            self._wire_library()
        return self.demo

    def _chat_column(self) -> None:
        import gradio as gr

        self.chatbot = gr.Chatbot(
            label="Dossier",
            height=520,
            elem_id="dossier-chatbot",
            latex_delimiters=[],
            feedback_options=None,
            buttons=["copy"],
            placeholder="Ask a question about the articles.",
        )
        with gr.Row():
            self.question = gr.Textbox(
                placeholder="Ask about the articles, e.g. What figures did Hamas report?",
                show_label=False,
                scale=6,
                elem_id="dossier-question",
                max_length=self.settings.max_question_chars,
                autofocus=True,
            )
            self.ask_button = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="dossier-ask")
            # Takes Ask's place while an answer streams in.
            self.stop_button = gr.Button(
                "Stop", variant="stop", scale=1, min_width=80, visible=False, elem_id="dossier-stop"
            )
        with gr.Row():
            self.retry_button = gr.Button("Retry", size="sm", elem_id="dossier-retry")
            self.clear_button = gr.Button("Clear conversation", size="sm", elem_id="dossier-clear")
        examples = self.settings.example_questions
        self.examples = (
            gr.Examples([[q] for q in examples], inputs=[self.question], label="Example questions")
            if examples
            else None
        )
        with gr.Accordion("Filters", open=False, elem_classes=["dossier-filters"]):
            self.sources = gr.Dropdown(
                choices=self.library.sources(), multiselect=True, label="Outlets", elem_id="dossier-sources-filter"
            )
            with gr.Row():
                # Date pickers that also take typed dates; a date that is not one is said politely.
                self.since = gr.DateTime(label="From", include_time=False, type="string", elem_id="dossier-since")
                self.until = gr.DateTime(label="Until", include_time=False, type="string", elem_id="dossier-until")

    def _library_column(self) -> None:
        import gradio as gr

        gr.Markdown("### Library")
        self.table = gr.Dataframe(
            value=_table(self.library.articles()),
            headers=["Title", "Outlet", "Date", "Chunks"],
            datatype="str",
            interactive=False,
            wrap=True,
            max_height=720,
            column_widths=["38%", "22%", "19%", "21%"],
            elem_id="dossier-articles",
        )
        if not self.access.chat_writes:
            refusal = self.access.chat_write_refusal
            gr.HTML(f"<p>{escape(refusal[:1].upper() + refusal[1:])}.</p>", elem_id="dossier-no-writes")
            self.remove_choice = gr.Dropdown(visible=False)
            return
        self.files = gr.File(
            file_count="multiple",
            file_types=sorted(ALLOWED_SUFFIXES),
            label="Add articles",
            elem_id="dossier-upload",
            height=130,
        )
        with gr.Accordion("Title, outlet, date, URL (optional)", open=False, elem_id="dossier-upload-fields"):
            with gr.Row():
                self.upload_title = gr.Textbox(label="Title", elem_id="dossier-upload-title")
                self.upload_outlet = gr.Textbox(label="Outlet", elem_id="dossier-upload-outlet")
            with gr.Row():
                self.upload_date = gr.Textbox(label="Date", placeholder="YYYY-MM-DD", elem_id="dossier-upload-date")
                self.upload_url = gr.Textbox(label="URL", placeholder="https://...", elem_id="dossier-upload-url")
            gr.Markdown(HEADER_HELP, elem_id="dossier-upload-help")
        self.upload_button = gr.Button("Ingest files", elem_id="dossier-ingest")
        self.upload_result = gr.HTML(elem_id="dossier-upload-result")
        with gr.Row():
            self.remove_choice = gr.Dropdown(
                label="Remove an article", choices=[], scale=3, elem_id="dossier-remove-choice"
            )
            self.remove_button = gr.Button("Remove", variant="stop", scale=1, elem_id="dossier-remove")
        self.remove_result = gr.HTML()

    def _wire_chat(self) -> None:
        import gradio as gr

        filters = [self.sources, self.since, self.until, self.answerer]
        chat_io = {
            "inputs": [self.question, self.turns, *filters],
            "outputs": [self.question, self.chatbot, self.turns],
        }
        # Each way of asking shows Stop (on the page, without queueing), answers, then shows Ask again.
        buttons: dict[str, Any] = {
            "outputs": [self.ask_button, self.stop_button],
            "queue": False,
            "api_visibility": "private",
        }
        asking = gr.on([self.question.submit, self.ask_button.click], self.busy, **buttons).then(
            self.ask, **chat_io, api_name="chat", concurrency_limit=8
        )  # type: ignore[arg-type]
        asking.then(self.idle, **buttons)
        retrying = self.retry_button.click(self.busy, **buttons).then(
            self.retry,
            [self.turns, *filters],
            [self.question, self.chatbot, self.turns],
            api_name="retry",
            concurrency_limit=8,
        )
        retrying.then(self.idle, **buttons)
        asking_examples = []
        if self.examples is not None:  # an example question is asked, not only put in the box
            asking_examples.append(
                self.examples.load_input_event.then(self.busy, **buttons).then(
                    self.ask, **chat_io, api_name="example", api_visibility="private", concurrency_limit=8
                )  # type: ignore[arg-type]
            )
            asking_examples[-1].then(self.idle, **buttons)
        self.stop_button.click(
            self.stop,
            [self.turns],
            [self.chatbot, self.turns, self.ask_button, self.stop_button],
            api_visibility="private",
            queue=False,
            cancels=[asking, retrying, *asking_examples],
        )
        # Both clears forget the conversation itself (`turns`), not only what the page shows: otherwise the next
        # question would be read as a follow-up of the cleared ones, and Retry would bring them back. A clear also
        # stops an answer still streaming in, which would write its turns back.
        gr.on(
            [self.clear_button.click, self.chatbot.clear],
            lambda: ("", [], []),
            None,
            [self.question, self.chatbot, self.turns],
            api_name="clear",
            cancels=[asking, retrying, *asking_examples],
        ).then(self.idle, **buttons)

    def _wire_library(self) -> None:
        import gradio as gr

        def upload(
            paths: list[str] | None,
            title: str,
            outlet: str,
            published: str,
            url: str,
            progress: Any = gr.Progress(),  # noqa: B008 (Gradio's idiom: it fills this in)
        ) -> tuple[Any, ...]:
            return self.upload(paths, title, outlet, published, url, progress)

        library_outputs = [self.table, self.sources, self.remove_choice]
        self.demo.load(self.refresh, None, library_outputs, api_visibility="private")
        if not self.access.chat_writes:  # then no event exists that a script could call either
            return
        fields = [self.upload_title, self.upload_outlet, self.upload_date, self.upload_url]
        self.upload_button.click(
            upload,
            [self.files, *fields],
            [self.upload_result, self.files, *library_outputs, *fields],
            api_visibility="private",
            concurrency_limit=1,
        )
        self.remove_button.click(
            self.remove,
            [self.remove_choice],
            [self.remove_result, self.upload_result, *library_outputs],
            js=CONFIRM_REMOVAL,
            api_visibility="private",
            concurrency_limit=1,
        )
