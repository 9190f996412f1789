"""Chunks: exact offsets, whole sentences, size and overlap, PDF pages, caption chunks, metadata."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from assistant.store import chunk_metadata
from ingest.chunking import chunk_article, chunk_spans
from ingest.loaders import load_file, load_paths
from ingest.models import CAPTIONS_HEADER, Article
from ingest.sentences import sentence_spans


def sentences(n: int, start: int = 1) -> str:
    """Distinct team-written sentences of 60-70 characters."""
    return " ".join(
        f"Council report {i} says the harbour budget rose by {i * 3} percent." for i in range(start, start + n)
    )


def article_of(text: str, captions: tuple[str, ...] = (), **fields: str) -> Article:
    return Article(
        id=fields.pop("id", "a"), title=fields.pop("title", "A title"), text=text, captions=captions, **fields
    )


def sentence_edges(article: Article) -> tuple[set[int], set[int]]:
    spans = sentence_spans(article.text, 0, article.body_end)
    return {start for start, _ in spans}, {end for _, end in spans}


@pytest.fixture
def demo_articles(demo_dir: Path) -> list[Article]:
    result = load_paths([demo_dir])
    assert result.skipped == []
    return result.articles


# -- offsets and sentences ---------------------------------------------------------------------


def test_text_at_the_recorded_offsets_is_the_passage(demo_articles: list[Article], corpus: Path) -> None:
    articles = demo_articles + load_paths([corpus]).articles
    for article in articles:
        chunks = chunk_article(article)
        assert chunks, article.id
        for index, chunk in enumerate(chunks):
            assert article.text[chunk.start : chunk.end] == chunk.text
            assert (chunk_metadata(chunk)["start"], chunk_metadata(chunk)["end"]) == (chunk.start, chunk.end)
            assert chunk.index == chunk_metadata(chunk)["chunk_index"] == index
            assert chunk.text == chunk.text.strip() and chunk.text


def test_chunks_start_and_end_at_sentence_boundaries(demo_articles: list[Article]) -> None:
    for article in demo_articles:
        starts, ends = sentence_edges(article)
        for chunk in chunk_article(article, size=300):
            if chunk_metadata(chunk)["kind"] == "body":
                assert chunk.start in starts, (article.id, chunk.text[:40])
                assert chunk.end in ends, (article.id, chunk.text[-40:])


def test_every_sentence_of_the_body_is_in_some_chunk(demo_articles: list[Article]) -> None:
    for article in demo_articles:
        chunks = chunk_article(article, size=400)
        for start, end in sentence_spans(article.text, 0, article.body_end):
            assert any(chunk.start <= start and end <= chunk.end for chunk in chunks), article.text[start:end]


def test_a_sentence_is_never_cut_even_when_it_does_not_fit() -> None:
    text = sentences(3) + " " + "The committee, which met for 9 hours, " * 5 + "agreed to the plan."
    article = article_of(text)

    chunks = chunk_article(article, size=200)

    _, ends = sentence_edges(article)
    assert all(chunk.end in ends for chunk in chunks)
    assert any(len(chunk.text) > 200 for chunk in chunks)  # the 200+ character sentence stays whole


# -- size, paragraphs, overlap -----------------------------------------------------------------


@pytest.mark.parametrize("size", [200, 450, 900])
def test_chunks_respect_the_size_limit(size: int) -> None:
    article = article_of("\n\n".join(sentences(4, start) for start in range(1, 60, 4)))

    chunks = chunk_article(article, size=size)

    assert len(chunks) > 1
    assert all(len(chunk.text) <= size for chunk in chunks)
    assert all(len(chunk.text) > size // 3 for chunk in chunks[:-1])  # and are not needlessly small


def test_chunks_prefer_to_end_at_a_paragraph_break() -> None:
    paragraph = sentences(10)
    assert 600 < len(paragraph) < 800
    article = article_of(f"{paragraph}\n\n{sentences(10, start=11)}")

    chunks = chunk_article(article, size=800)  # the first paragraph fills it three quarters

    assert [chunk.text for chunk in chunks] == [paragraph, sentences(10, start=11)]


def test_no_overlap_by_default() -> None:
    chunks = chunk_article(article_of(sentences(30)), size=300)

    assert len(chunks) > 3
    assert all(left.end < right.start for left, right in zip(chunks, chunks[1:], strict=False))


def test_overlap_repeats_whole_trailing_sentences() -> None:
    article = article_of(sentences(30))
    starts, _ = sentence_edges(article)

    chunks = chunk_article(article, size=300, overlap=150)

    assert len(chunks) > 3
    for left, right in zip(chunks, chunks[1:], strict=False):
        assert right.start < left.end  # they overlap...
        assert right.start in starts  # ...by whole sentences...
        assert left.end - right.start <= 150  # ...of at most `overlap` characters
        assert right.end > left.end
    assert all(len(chunk.text) <= 300 for chunk in chunks)


def test_a_long_run_without_full_stops_is_split_at_whitespace() -> None:
    listing = ", ".join(f"item {i} of the harbour inventory" for i in range(80))  # one 2,800-character "sentence"

    spans = chunk_spans(listing, 0, len(listing), size=500)

    assert len(spans) >= 6
    assert all(end - start <= 500 for start, end in spans)
    assert "".join(listing[start:end] + " " for start, end in spans).strip() == listing


# -- pdf pages ---------------------------------------------------------------------------------


def test_pdf_chunks_carry_their_page_and_never_span_two(
    demo_dir: Path, tmp_path: Path, make_pdf: Callable[..., Path]
) -> None:
    tunnel = make_pdf(tmp_path / "tunnel.pdf", [sentences(12), sentences(12, start=13)], title="Tunnel report")
    for path in (demo_dir / "kestrel-1-launch.pdf", tunnel):
        [article] = load_file(path).articles
        chunks = chunk_article(article)
        assert {chunk.page for chunk in chunks} == {1, 2}
        for chunk in chunks:
            assert (
                chunk.page
                == chunk_metadata(chunk)["page"]
                == article.page_at(chunk.start)
                == article.page_at(chunk.end - 1)
            )


def test_the_demo_pdf_cites_page_two_for_its_cost(demo_dir: Path) -> None:
    [article] = load_file(demo_dir / "kestrel-1-launch.pdf").articles

    [chunk] = [chunk for chunk in chunk_article(article) if "310 million euros" in chunk.text]

    assert chunk.page == 2


def test_non_pdf_chunks_have_no_page(corpus: Path) -> None:
    for article in load_paths([corpus]).articles:
        for chunk in chunk_article(article):
            assert chunk.page is None and "page" not in chunk_metadata(chunk)


# -- captions ----------------------------------------------------------------------------------


def test_caption_chunks_are_marked_and_kept_apart_from_the_body(corpus: Path) -> None:
    [ferry] = [article for article in load_paths([corpus]).articles if article.id == "ferry"]

    chunks = chunk_article(ferry)

    body = [chunk for chunk in chunks if chunk_metadata(chunk)["kind"] == "body"]
    captions = [chunk for chunk in chunks if chunk_metadata(chunk)["kind"] == "caption"]
    assert [chunk.text for chunk in captions] == [
        "Crew members walk back to the ferry terminal in Larsholm on Thursday"
    ]
    assert all(chunk.end <= ferry.body_end for chunk in body)
    assert all(chunk.start > ferry.body_end for chunk in captions)
    assert not any(CAPTIONS_HEADER in chunk.text for chunk in chunks)
    assert chunks[-1] is captions[-1]  # captions come after the body


def test_several_captions_become_caption_chunks_without_overlap() -> None:
    body = sentences(3)
    caption_lines = [f"Photo {i}: council members tour the harbour site on day {i}." for i in range(1, 4)]
    article = article_of(f"{body}\n\n{CAPTIONS_HEADER}\n\n" + "\n\n".join(caption_lines), captions=tuple(caption_lines))

    chunks = chunk_article(article, size=200, overlap=100)

    caption_text = " ".join(chunk.text for chunk in chunks if chunk_metadata(chunk)["kind"] == "caption")
    assert all(line in caption_text for line in caption_lines)
    assert all(caption_text.count(line) == 1 for line in caption_lines)


# -- metadata and embedded text ----------------------------------------------------------------


def test_metadata_fields(corpus: Path) -> None:
    [bridge] = [article for article in load_paths([corpus]).articles if article.id == "bridge"]

    [chunk] = chunk_article(bridge)

    assert chunk_metadata(chunk) == {
        "article_id": "bridge",
        "chunk_index": 0,
        "start": 0,
        "end": len(bridge.text),
        "kind": "body",
        "title": "Larsholm opens its new harbour bridge",
        "source": "Larsholm Gazette",
        "published": "2024-05-14",
        "published_day": date(2024, 5, 14).toordinal(),
        "url": "https://example.org/larsholm-gazette/2024/05/14/harbour-bridge",
        "path": str(corpus / "bridge.txt"),
        "author": "Nora Lind",
        "version": bridge.version,
    }
    assert all(
        isinstance(value, str | int | float | bool) for value in chunk_metadata(chunk).values()
    )  # Chroma accepts these


def test_embedded_text_carries_a_title_and_date_header_but_the_passage_does_not(corpus: Path) -> None:
    articles = {article.id: article for article in load_paths([corpus]).articles}

    [bridge] = chunk_article(articles["bridge"])
    [ferry_body, _] = chunk_article(articles["ferry"])

    assert bridge.embed_text == f"Larsholm opens its new harbour bridge (2024-05-14)\n{bridge.text}"
    assert ferry_body.embed_text == f"Ferry crews end four-day strike in Larsholm\n{ferry_body.text}"  # no date known
    assert "Larsholm opens" not in bridge.text


def test_unknown_dates_have_day_zero() -> None:
    [chunk] = chunk_article(article_of("The pier reopened."))

    assert chunk_metadata(chunk)["published"] == "" and chunk_metadata(chunk)["published_day"] == 0


def test_version_hash_follows_stored_content_and_text_hash_ignores_spacing() -> None:
    article = article_of("The pier reopened after 3 weeks.", source="City Desk")

    assert article.version == article_of("The pier reopened after 3 weeks.", source="City Desk").version
    assert article.version != article_of("The pier reopened after 4 weeks.", source="City Desk").version
    assert article.version != article_of("The pier reopened after 3 weeks.", source="Harbor Daily").version
    assert article.text_hash == article_of("The  pier reopened\nafter 3 weeks.", title="Another title").text_hash
    assert article.text_hash != article_of("The pier reopened after 4 weeks.").text_hash
