"""Cut a cleaned article into sentence-aligned chunks that remember their character offsets and context."""

from __future__ import annotations

from ingest.models import CAPTIONS_HEADER, Article, Chunk
from ingest.sentences import paragraph_spans, sentence_spans


def chunk_spans(text: str, start: int, end: int, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Spans of text[start:end] made of whole sentences, each at most `size` characters where possible.

    A chunk prefers to end at a paragraph break once it is three quarters full. `overlap` repeats whole trailing
    sentences (up to that many characters) at the start of the next chunk. A single sentence longer
    than twice `size` (a list with no full stops) is split at whitespace, since it is not prose.
    """
    sentences = [piece for span in sentence_spans(text, start, end) for piece in _split_long(text, span, size)]
    paragraph_ends = {p_end + start for _, p_end in paragraph_spans(text[start:end])}
    chunks: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    for sentence in sentences:
        if current and sentence[1] - current[0][0] > size:
            chunks.append((current[0][0], current[-1][1]))
            current = _overlap_tail(current, overlap)
            if current and sentence[1] - current[0][0] > size:
                current = []
        current.append(sentence)
        length = current[-1][1] - current[0][0]
        if sentence[1] in paragraph_ends and length >= size * 3 // 4:
            chunks.append((current[0][0], current[-1][1]))
            current = _overlap_tail(current, overlap)
    if current and (not chunks or current[-1][1] > chunks[-1][1]):
        chunks.append((current[0][0], current[-1][1]))
    return chunks


def _overlap_tail(sentences: list[tuple[int, int]], overlap: int) -> list[tuple[int, int]]:
    tail: list[tuple[int, int]] = []
    for sentence in reversed(sentences[1:]):
        if sentences[-1][1] - sentence[0] > overlap:
            break
        tail.insert(0, sentence)
    return tail


def _split_long(text: str, span: tuple[int, int], size: int) -> list[tuple[int, int]]:
    start, end = span
    if end - start <= 2 * size:
        return [span]
    pieces = []
    while end - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        cut = cut if cut > start else start + size
        pieces.append((start, cut))
        start = cut + 1 if text[cut : cut + 1] == " " else cut
    pieces.append((start, end))
    return pieces


def chunk_article(article: Article, size: int = 900, overlap: int = 0) -> list[Chunk]:
    """Chunks of the article's body, then of its caption section (marked `kind: caption`).

    A PDF's pages are chunked one by one, so that every chunk lies on the single page it cites.
    """
    body_end = article.body_end
    page_starts = [min(start, body_end) for start in article.pages or (0,)]
    page_ends = [*page_starts[1:], body_end]
    spans = [
        (span, "body")
        for page_start, page_end in zip(page_starts, page_ends, strict=True)
        for span in chunk_spans(article.text, page_start, page_end, size, overlap)
    ]
    if body_end < len(article.text):
        captions_start = article.text.index(CAPTIONS_HEADER, body_end) + len(CAPTIONS_HEADER)
        spans += [(span, "caption") for span in chunk_spans(article.text, captions_start, len(article.text), size)]
    header = article.title + (f" ({article.published})" if article.published else "")
    chunks = []
    for index, ((start, end), kind) in enumerate(spans):
        passage = article.text[start:end]
        chunks.append(
            Chunk(
                article=article,
                index=index,
                text=passage,
                start=start,
                end=end,
                embed_text=f"{header}\n{passage}" if header else passage,
                kind=kind,
                page=article.page_at(start),
            )
        )
    return chunks


__all__ = ["chunk_article", "chunk_spans"]
