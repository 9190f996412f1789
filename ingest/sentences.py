"""Sentence boundaries with character offsets (blingfire), shared by chunking and the extractive answerer."""

from __future__ import annotations

import re

_PARAGRAPH = re.compile(r"\n\s*\n")


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each paragraph: blocks separated by blank lines, trimmed of surrounding space."""
    spans = []
    position = 0
    for match in [*_PARAGRAPH.finditer(text), None]:
        end = match.start() if match else len(text)
        block = text[position:end]
        stripped = block.strip()
        if stripped:
            start = position + block.index(stripped)
            spans.append((start, start + len(stripped)))
        position = match.end() if match else len(text)
    return spans


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) offsets in `text` of each sentence in text[start:end]; never crosses a paragraph break."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for p_start, p_end in paragraph_spans(text[start:end]):
        paragraph = text[start + p_start : start + p_end]
        for s_start, s_end in _sentence_offsets(paragraph):
            spans.append((start + p_start + s_start, start + p_start + s_end))
    return spans


def _sentence_offsets(paragraph: str) -> list[tuple[int, int]]:
    """Split with blingfire's C splitter, then find each sentence in the paragraph.

    blingfire's own offsets API maps bytes to characters in pure Python, which is ten times slower.
    """
    import blingfire

    sentences = blingfire.text_to_sentences(paragraph).split("\n")
    offsets = []
    cursor = 0
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        found = paragraph.find(sentence, cursor)
        if found < 0:  # blingfire normalised something; fall back to one span for the rest
            offsets.append((cursor, len(paragraph)))
            return offsets
        offsets.append((found, found + len(sentence)))
        cursor = found + len(sentence)
    return offsets
