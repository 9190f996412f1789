"""Remove scraped-news boilerplate (credits, duplicated captions, promos) and normalise Unicode and whitespace.

Rules are general, line-based and conservative: a line is dropped only when its shape says it is not
article prose. Everything dropped is kept in `Article.removed` (shown by `dossier show ID --raw`).
Photo captions are kept apart: they can carry facts (names, places) that the prose lacks, so they are
appended after the body under a `Photo captions:` line, chunked on their own and down-weighted in
retrieval, and listed in `Article.captions`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from ingest.models import CAPTIONS_HEADER, Article

_QUOTES = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u2033": '"',
        "\u00a0": " ",
        "\u2007": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\u200a": " ",
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\ufeff": None,
        "\u00ad": None,
    }
)
_SPECIAL = re.compile("[" + "".join(chr(code) for code in _QUOTES) + "]")
_SPACES = re.compile(r"[ \t\f\v]+")

# "(photo credit: REUTERS)", "(credit: SPUTNIK/REUTERS)", "Photo: AP", "Image credit: Getty Images"
_CREDIT = r"\(?\s*(?:photo|image|picture|video)?\s*(?:credit|courtesy|source)?s?\s*:\s*[^()]{1,80}\)?"
_CREDIT_ONLY = re.compile(
    r"^\(?\s*(?:(?:photo|image|picture|video)\s*(?:credit)?|credit|courtesy)s?\s*:\s*[^()]{1,80}\)?\s*$", re.I
)
_ENDS_WITH_CREDIT = re.compile(r"^(.{3,}?)\s*\(\s*(?:(?:photo|image|picture)\s*)?credit\s*:\s*[^()]{1,80}\)\s*$", re.I)
_AGENCY_CREDIT = re.compile(r"^(?:[A-Z][\w.&' -]{0,40}/)*(?:getty images|reuters|ap|afp|shutterstock|epa)\s*$", re.I)

# Promos, calls to action and page furniture, recognised by wording shared across outlets.
_PROMO = re.compile(
    r"""(
        ^stay\s+(updated|informed|up\s+to\s+date)\b
      | ^(sign\s+up|subscribe|register)\b.{0,120}$
      | \bsubscribe\s+to\b.{0,80}\bnewsletter\b
      | \bnewsletter\b.{0,120}\b(sign\s+up|subscribe|inbox)\b
      | \b(sign\s+up|subscribe)\b.{0,80}\b(newsletter|inbox|here)\b
      | \bsupport\s+(local\s+)?journalism\b
      | ^(read|see)\s+more\b[^.!?]{0,80}$
      | ^(related|recommended|more\s+from)\b[^.!?]{0,60}:?\s*$
      | ^(advertisement|sponsored(\s+content)?|ad)\s*$
      | ^follow\s+(us|\S+)\s+on\s+(twitter|facebook|instagram|x|linkedin)\b
      | ^share\s+(this|on)\b.{0,60}$
      | ^(click|tap)\s+here\b
      | ^check\s+.{0,40}\shere\s*>*\s*$
      | ^download\s+(the|our)\s+.{0,30}app\b
      | ^(copyright\s+(\(c\)\s*|\u00a9\s*)?\d{4}|\(c\)\s|\u00a9\s).{0,100}$
      | \ball\s+rights\s+reserved\b
      | ^this\s+(story|article)\s+(was\s+)?(originally\s+)?(appeared|published)\s+(on|in)\b
    )""",
    re.I | re.X,
)
_SEPARATOR = re.compile(r"^[\W_]{3,}$")


def normalise_text(text: str) -> str:
    """NFC-normalise, straighten quotes, drop zero-width characters and collapse runs of spaces."""
    text = unicodedata.normalize("NFC", text)
    # str.translate walks every character in Python; a regex finds the few special ones in C.
    text = _SPECIAL.sub(lambda match: match.group().translate(_QUOTES), text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))


def classify_line(line: str) -> str:
    """'text', 'caption', 'credit', 'promo' or 'separator' for one normalised line."""
    if _SEPARATOR.match(line):
        return "separator"
    if len(line) <= 250 and _PROMO.search(line):
        return "promo"
    if _CREDIT_ONLY.match(line) or _AGENCY_CREDIT.match(line):
        return "credit"
    if _ENDS_WITH_CREDIT.match(line):
        return "caption"
    return "text"


def clean_text(text: str, *, join_wrapped_lines: bool = False) -> tuple[str, list[str], list[str]]:
    """Clean one body of text; return (cleaned text, removed lines, captions).

    Paragraphs are separated by one blank line. With `join_wrapped_lines` (PDF pages), lines inside a
    block are joined into one paragraph, mending words hyphenated across lines.
    """
    lines = normalise_text(text).split("\n")
    if join_wrapped_lines:
        lines = _join_wrapped(lines)
    removed: list[str] = []
    captions: list[str] = []
    kept: list[str] = []
    seen: set[str] = set()
    # A caption's credit stands on the very next line; after a blank line, a credit says nothing about the
    # paragraph before it (which may be prose).
    credit_follows = [
        bool(line) and index + 1 < len(lines) and classify_line(lines[index + 1]) == "credit"
        for index, line in enumerate(lines)
    ]
    credit_follows = [follows for line, follows in zip(lines, credit_follows, strict=True) if line]
    lines = [line for line in lines if line]
    kinds = [classify_line(line) for line in lines]
    for index, (line, kind) in enumerate(zip(lines, kinds, strict=True)):
        key = _dedupe_key(line)
        if kind == "caption":
            match = _ENDS_WITH_CREDIT.match(line)
            caption = match.group(1).strip() if match else line
            if caption not in captions:
                captions.append(caption)
            seen.add(_dedupe_key(caption))
            removed.append(line)
        elif kind != "text":
            removed.append(line)
        elif key in seen and len(line) > 20:
            removed.append(line)  # a repeated line: duplicated captions and pull quotes
        elif credit_follows[index] and len(line) <= 300:
            captions.append(line)  # a caption whose credit stands on the next line
            seen.add(key)
            removed.append(line)
        else:
            seen.add(key)
            kept.append(line)
    return "\n\n".join(kept), removed, captions


def _dedupe_key(line: str) -> str:
    return re.sub(r"\W+", " ", line).strip().lower()


def _join_wrapped(lines: list[str]) -> list[str]:
    """Join PDF lines of one block into paragraphs.

    Wrapped lines run nearly the full text width; a blank line, or a line much shorter than the
    page's longest (a heading, a byline, the last line of a paragraph), ends the paragraph.
    """
    width = max((len(line) for line in lines), default=0)
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if not line:
            if current:
                paragraphs.append(current)
                current = ""
            continue
        if current.endswith("-") and line[:1].islower():
            current = current[:-1] + line
        else:
            current = f"{current} {line}".strip()
        if len(line) < 0.7 * width:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return paragraphs


def clean_article(article: Article, pages: list[str] | None = None) -> Article:
    """Return `article` with clean text; for PDFs pass the page texts and page offsets are recorded."""
    if pages is None:
        text, removed, captions = clean_text(article.text)
        return replace(
            article,
            title=normalise_text(article.title).replace("\n", " ").strip(),
            text=_with_captions(text, captions),
            removed=tuple(removed),
            captions=tuple(captions),
        )
    parts: list[str] = []
    starts: list[int] = []
    all_removed: list[str] = []
    all_captions: list[str] = []
    offset = 0
    for page_text in pages:
        text, removed, captions = clean_text(page_text, join_wrapped_lines=True)
        all_removed += removed
        all_captions += captions
        starts.append(offset)
        if text:
            parts.append(text)
            offset += len(text) + 2
    return replace(
        article,
        title=normalise_text(article.title).replace("\n", " ").strip(),
        text=_with_captions("\n\n".join(parts), all_captions),
        removed=tuple(all_removed),
        captions=tuple(all_captions),
        pages=tuple(starts),
    )


def _with_captions(body: str, captions: list[str]) -> str:
    if not captions or not body:
        return body
    return "\n\n".join([body, CAPTIONS_HEADER, *captions])
