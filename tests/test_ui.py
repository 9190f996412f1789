"""The chat's rendering: answers with [n] markers and sources, highlighted sentences, and untrusted text made inert."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from assistant.errors import DossierError
from assistant.library import UploadResult
from assistant.models import Answer, AnswerSentence, Citation, Passage
from assistant.ui import (
    answer_html,
    answer_plain,
    escape,
    highlight,
    not_received,
    parse_filters,
    results_html,
    safe_link,
)

XSS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[click](javascript:window.__xss=1)",
    "<a href='javascript:window.__xss=1'>x</a>",
    "![p](x onerror=alert(1))",
    "<svg onload=alert(1)>",
    "$$\\href{javascript:alert(1)}{x}$$",
    "<details open ontoggle=alert(1)>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
]


def citation(
    n: int = 1, passage: str = "First sentence. The ministry reported 36,000 deaths. Last one.", **changes: object
) -> Citation:
    fields: dict[str, object] = {
        "n": n,
        "article_id": "gaza",
        "title": "Gaza figures",
        "source": "The Daily Ledger",
        "published": "2024-06-06",
        "url": "https://example.org/gaza",
        "passage": passage,
        "sentence": "The ministry reported 36,000 deaths.",
        "start": 16,
        "end": 52,
        "page": None,
        "score": 0.9,
    }
    fields.update(changes)
    return Citation(**fields)  # type: ignore[arg-type]


def inert(markup: str) -> bool:
    """No tag or attribute of the payloads survives: only our own tags are present."""
    tags = set(re.findall(r"<\s*([a-zA-Z0-9]+)", markup))
    allowed = {
        "div",
        "p",
        "span",
        "details",
        "summary",
        "ol",
        "ul",
        "li",
        "b",
        "blockquote",
        "mark",
        "a",
        "code",
        "del",
        "br",
    }
    hrefs = re.findall(r'href="([^"]*)"', markup)
    handlers = [tag for tag in re.findall(r"<[^>]*>", markup) if re.search(r"\son\w+\s*=", tag)]
    return tags <= allowed and all(h.startswith(("http://", "https://")) for h in hrefs) and not handlers


def test_answer_has_markers_and_collapsed_sources() -> None:
    answer = Answer("q", "The ministry reported 36,000 deaths. [1]", [citation()], abstained=False)
    markup = answer_html(answer)
    marker = re.search(
        r'<span class="dossier-ref dossier-ref-link" role="link" tabindex="0" title="([^"]*)">\[1\]</span>', markup
    )
    assert marker is not None, markup  # a link to source 1 for the mouse and the keyboard (see ui.HEAD)
    assert html.unescape(marker.group(1)) == "Source 1: Gaza figures: \u201cThe ministry reported 36,000 deaths.\u201d"
    assert "<details" in markup and '<details class="dossier-sources" open' not in markup
    assert "<summary>Sources (1)</summary>" in markup
    assert "Gaza figures" in markup and "The Daily Ledger" in markup and "6 June 2024" in markup
    assert 'href="https://example.org/gaza"' in markup and 'rel="noopener noreferrer nofollow"' in markup
    mark = re.search(r"<mark>(.*?)</mark>", markup)
    assert mark is not None and html.unescape(mark.group(1)) == "The ministry reported 36,000 deaths."
    assert "\n" not in markup, "one HTML block: Markdown never gets to parse article text"


def test_a_marker_without_a_source_links_nowhere() -> None:
    answer = Answer("q", "Claimed. [1] Dangling. [7]", [citation()], abstained=False)
    markup = answer_html(answer)
    assert '<span class="dossier-ref">[7]</span>' in markup and "Source 7" not in markup
    assert markup.count("dossier-ref-link") == 1


def test_removed_sentences_are_shown_as_removed() -> None:
    removed = [AnswerSentence("Israel said 99,000.", (1,), 0.1, unsupported=True)]
    answer = Answer(
        "q",
        "The ministry reported 36,000 deaths. [1]\n\nNote: 1 sentence(s) removed.",
        [citation()],
        False,
        removed=removed,
    )
    markup = answer_html(answer)
    assert "Removed, not supported by the cited passages" in markup
    assert "<del>" in markup and "99" in html.unescape(markup)
    assert '<p class="dossier-note">Note' in markup


def test_abstention_shows_the_closest_passages_open() -> None:
    closest = [
        Passage(
            "c1", "ecb", "The ECB cut rates to 3.75%.", 0, 27, title="ECB cuts", source="Wire", path="/srv/d/ecb.md"
        )
    ]
    answer = Answer("q", "The articles do not answer this question.", [], abstained=True, closest=closest)
    markup = answer_html(answer)
    assert '<details class="dossier-sources" open><summary>Closest passages (1)</summary>' in markup
    assert "ECB cuts" in markup and "href" not in markup


@pytest.mark.parametrize("url", ["", "/srv/dossier/data/uploads/ecb.md", "file:///srv/dossier/data/uploads/ecb.md"])
def test_without_a_url_the_chat_names_the_file_never_its_path(url: str) -> None:
    path = "/srv/dossier/data/uploads/ecb.md"
    passage = Passage("c1", "upload/ecb", "The ECB cut rates to 3.75%.", 0, 27, title="ECB cuts", url=url, path=path)
    cited = citation(article_id="upload/ecb", title="ECB cuts", url=url, passage=passage.text, sentence=passage.text)
    for answer in (
        Answer("q", "The ECB cut rates to 3.75%. [1]", [cited], False, retrieved=[passage]),
        Answer("q", "The articles do not answer this question.", [], True, closest=[passage]),
    ):
        text = html.unescape(answer_html(answer))
        assert "ECB cuts" in text and "ecb.md" in text and "/srv" not in text and "href" not in text
    assert (
        passage.link == "" and Answer("q", "t", [], True, closest=[passage]).to_dict()["closest"][0]["path"] == "ecb.md"
    )


def test_each_message_carries_its_plain_text_for_copy_and_screen_readers() -> None:
    removed = [AnswerSentence("Israel said 99,000.", (1,), 0.1, unsupported=True)]
    answer = Answer("q", "The ministry reported 36,000 deaths. [1]", [citation()], False, removed=removed)
    plain = answer_plain(answer)
    assert plain.startswith("The ministry reported 36,000 deaths. [1]\n\n")
    assert "- Israel said 99,000." in plain
    assert plain.endswith(
        "Sources:\n[1] Gaza figures, The Daily Ledger, 6 June 2024, https://example.org/gaza\n"
        '    "The ministry reported 36,000 deaths."'
    )
    markup = answer_html(answer)
    copied = re.search(r'data-dossier-copy="([^"]*)"', markup)
    assert copied is not None and html.unescape(copied.group(1)) == plain and "\n" not in markup
    closest = [Passage("c", "ecb", "The ECB cut rates.", 0, 18, title="ECB cuts", path="/srv/d/ecb.md")]
    abstained = answer_plain(Answer("q", "The articles do not answer this question.", [], True, closest=closest))
    assert abstained.endswith("Closest passages:\n- ECB cuts, ecb.md") and "/srv" not in abstained


def test_highlight_finds_the_sentence_across_whitespace() -> None:
    marked = highlight("One.\nThe  ministry reported\n36,000 deaths. Two.", "The ministry reported 36,000 deaths.")
    assert "<mark>" in marked and html.unescape(marked.split("<mark>")[1].split("</mark>")[0]).replace(
        "<br>", " "
    ).split() == ["The", "ministry", "reported", "36,000", "deaths."]
    assert "<mark>" not in highlight("No match here.", "Something else.")


@pytest.mark.parametrize("payload", XSS)
def test_untrusted_text_is_inert_everywhere(payload: str) -> None:
    hostile = citation(
        passage=f"Before {payload} the ministry reported 36,000 deaths. {payload}",
        sentence=f"{payload} the ministry reported 36,000 deaths.",
        title=f"Title {payload}",
        source=f"Outlet {payload}",
        url=f"javascript:{payload}",
    )
    removed = [AnswerSentence(f"Bad {payload}", (1,), 0.0, True)]
    closest = [Passage("c", "a", f"Text {payload}", 0, 5, title=payload, source=payload, url=payload)]
    for answer in (
        Answer(payload, f"Claim {payload} [1]", [hostile], False, removed=removed, rewritten_question=payload),
        Answer(payload, "The articles do not answer this question.", [], True, closest=closest),
    ):
        markup = answer_html(answer)
        assert inert(markup), markup
    assert inert(escape(payload)) and inert(results_html([UploadResult(payload, "skipped", reason=payload)]))
    assert inert(results_html([UploadResult(payload, "added", (payload,), reason=payload, notes=(payload,))]))


def test_escape_keeps_the_text_readable() -> None:
    text = '[1] costs $5 *now* <b> & "it\'s" #1 - a:b @c =d \\ `e`'
    assert html.unescape(escape(text)) == text
    assert "&#38;#" not in escape("&#x27;") and html.unescape(escape("&#x27;")) == "&#x27;"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<b>",
        "/stored/file.txt",
        "ftp://x/y",
        "https//broken",
        "  JAVASCRIPT:alert(1)",
    ],
)
def test_only_web_links_are_clickable(url: str) -> None:
    assert "<a " not in safe_link(url)


def test_filters_from_the_controls() -> None:
    filters = parse_filters(["Wire"], "2024-06-01", "")
    assert filters.sources == ("Wire",) and str(filters.since) == "2024-06-01" and filters.until is None
    with pytest.raises(DossierError, match="YYYY-MM-DD"):
        parse_filters([], "June", "")
    with pytest.raises(DossierError, match=r"^until: '2024/06/01' is not a date; use YYYY-MM-DD$"):
        parse_filters([], "", "2024/06/01")
    with pytest.raises(DossierError, match="swap the two dates"):
        parse_filters([], "2024-07-01", "2024-06-01")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("outside.txt", "outside the chat's upload folder"),
        ("gradio/../outside.txt", "outside the chat's upload folder"),
        ("gradio/link.txt", "symbolic link"),
        ("gradio/linked-dir/outside.txt", "outside the chat's upload folder"),
        ("gradio/planted.txt", "did not receive it"),
        ("gradio/missing.txt", "no uploaded file"),
        ("gradio", "no uploaded file"),
    ],
)
def test_only_files_gradio_received_are_read(tmp_path: Path, name: str, says: str) -> None:
    folder = tmp_path / "gradio"
    folder.mkdir()
    secret = tmp_path / "outside.txt"
    secret.write_text("secret")
    (folder / "link.txt").symlink_to(secret)
    (folder / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    (folder / "planted.txt").write_text("never uploaded")
    received = folder / "abc123" / "notes.txt"
    received.parent.mkdir()
    received.write_text("uploaded")
    assert not_received(received, folder.resolve(), {str(received)}) == ""
    assert says in not_received(tmp_path / name, folder.resolve(), {str(received)})
