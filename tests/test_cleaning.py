"""Cleaning scraped news: boilerplate goes (and is kept aside), facts and paragraphs stay, Unicode is normalised."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.cleaning import clean_article, clean_text, normalise_text
from ingest.loaders import load_file
from ingest.models import CAPTIONS_HEADER, Article

# -- the seed article from ../shared (never copied here: the assertions are about its shape) ---


@pytest.fixture
def seed_path(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "seed-article.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture
def seed(seed_path: Path) -> Article:
    result = load_file(seed_path)
    assert result.skipped == []
    [article] = result.articles
    return article


def body_lines(article: Article) -> list[str]:
    return [line for line in article.text[: article.body_end].split("\n") if line]


def test_seed_photo_credits_are_gone(seed: Article, seed_path: Path) -> None:
    assert "photo credit" in seed_path.read_text().lower()  # the mess is really there

    assert not [line for line in seed.text.split("\n") if "photo credit" in line.lower()]
    assert not re.search(r"\(\s*credit\s*:", seed.text, re.I)


def test_seed_newsletter_promo_is_gone(seed: Article, seed_path: Path) -> None:
    assert "Subscribe to" in seed_path.read_text()

    assert "Subscribe to" not in seed.text
    assert "Stay updated" not in seed.text


def test_seed_captions_appear_once_in_the_caption_section(seed: Article, seed_path: Path) -> None:
    raw = normalise_text(seed_path.read_text())
    assert seed.captions, "the seed article's photo captions should be kept apart"

    for caption in seed.captions:
        assert raw.count(caption) >= 2  # duplicated in the scrape
        assert seed.text.count(caption) == 1
        assert seed.text.index(caption) > seed.body_end
    assert seed.text[seed.body_end :].lstrip().startswith(CAPTIONS_HEADER)


def test_seed_facts_stay_in_the_body(seed: Article) -> None:
    body = seed.text[: seed.body_end]

    for fact in ("36,000", "25,000", "14,000", "1,200", "251", "124", "Putin", "St. Petersburg", "Saudi Arabia"):
        assert fact in body, fact


def test_seed_prose_is_kept_whole_and_in_paragraphs(seed: Article, seed_path: Path) -> None:
    raw_lines = {line.strip() for line in normalise_text(seed_path.read_text()).split("\n")}
    lines = body_lines(seed)

    assert all(line in raw_lines for line in lines)  # nothing invented or cut
    assert len(lines) >= 15
    assert seed.text[: seed.body_end].count("\n\n") == len(lines) - 1  # one paragraph per source paragraph
    long_raw = [line for line in raw_lines if len(line) > 150 and "credit" not in line.lower()]
    assert all(line in lines for line in long_raw)  # every long prose paragraph survives


def test_seed_quotes_and_whitespace_are_normalised(seed: Article) -> None:
    for curly in "\u201c\u201d\u2018\u2019":
        assert curly not in seed.text and curly not in seed.title
    assert "  " not in seed.text
    assert "\n\n\n" not in seed.text
    assert all(line == line.strip() for line in seed.text.split("\n"))
    assert seed.title.startswith("Putin") and "'" in seed.title


def test_seed_removed_lines_are_kept_for_inspection(seed: Article, seed_path: Path) -> None:
    raw_lines = {line.strip() for line in normalise_text(seed_path.read_text()).split("\n")}

    assert seed.removed
    assert all(line in raw_lines for line in seed.removed)
    assert any("photo credit" in line.lower() for line in seed.removed)
    assert any("Subscribe to" in line for line in seed.removed)
    assert not any("36,000" in line for line in seed.removed)


# -- general rules, on examples the team wrote -------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "(photo credit: REUTERS)",
        "(credit: HARBOR DAILY/STAFF)",
        "Photo: AP",
        "Image credit: Getty Images",
        "Getty Images",
        "AFP/Getty Images",
        "Courtesy: Larsholm city council",
    ],
)
def test_credit_lines_are_removed(line: str) -> None:
    text, removed, _ = clean_text(f"The bridge opened on Tuesday.\n\n{line}\n\nIt cost 212 million crowns.")

    assert text == "The bridge opened on Tuesday.\n\nIt cost 212 million crowns."
    assert removed == [line]


@pytest.mark.parametrize(
    "line",
    [
        "Stay updated with the latest news!",
        "Stay informed: get our alerts",
        "Subscribe to the Harbor Daily Newsletter",
        "Sign up for our morning briefing",
        "Sign up to get the best stories in your inbox",
        "Read more: Larsholm ferry strike enters fourth day",
        "Related stories",
        "Advertisement",
        "Follow us on Twitter",
        "Share this article",
        "Click here to read the full report",
        "Download the Harbor Daily app",
        "\u00a9 2024 Harbor Daily. All rights reserved.",
        "Copyright 2024 The Meridian Post",
        "This story originally appeared on Harbor Daily.",
        "Support local journalism today",
        "* * *",
    ],
)
def test_promos_and_page_furniture_are_removed(line: str) -> None:
    text, removed, captions = clean_text(f"Prices fell by 8%.\n\n{line}\n\nGrowers picked 41,500 tonnes.")

    assert text == "Prices fell by 8%.\n\nGrowers picked 41,500 tonnes."
    assert removed == [normalise_text(line)]
    assert captions == []


@pytest.mark.parametrize(
    "line",
    [
        "Readers who subscribe to the print edition will pay 12% more from June.",
        "Related costs rose by 3% in the year to March, the council said.",
        "See more than 300 species at the zoo this summer, the director urged visitors.",
        "Copyright lawyers said the ruling would affect 2,000 artists.",
        "The photographer's credit line was missing, the court heard.",
        "Source: the ministry said 40 people were hurt.",
        "Advertising revenue fell 8% in the quarter.",
        "Newsletter sales at the firm rose to 1.2 million copies.",
    ],
)
def test_prose_that_merely_mentions_boilerplate_words_is_kept(line: str) -> None:
    text, removed, _ = clean_text(f"First paragraph here.\n\n{line}")

    assert text == f"First paragraph here.\n\n{line}"
    assert removed == []


def test_caption_with_inline_credit_moves_to_captions() -> None:
    text, removed, captions = clean_text(
        "The mayor opened the bridge.\n\n"
        "Mayor Henrik Sand cuts the ribbon on Tuesday (photo credit: NORA LIND)\n\n"
        "About 18,000 vehicles will cross each day."
    )

    assert text == "The mayor opened the bridge.\n\nAbout 18,000 vehicles will cross each day."
    assert captions == ["Mayor Henrik Sand cuts the ribbon on Tuesday"]
    assert removed == ["Mayor Henrik Sand cuts the ribbon on Tuesday (photo credit: NORA LIND)"]


def test_caption_followed_by_its_credit_line_moves_to_captions() -> None:
    text, removed, captions = clean_text(
        "Growers picked a record crop.\nMaria Eklund inspects apples in her Vestdal orchard\nPhoto: Jonas Berg\nPrices fell by 8%."
    )

    assert text == "Growers picked a record crop.\n\nPrices fell by 8%."
    assert captions == ["Maria Eklund inspects apples in her Vestdal orchard"]
    assert removed == ["Maria Eklund inspects apples in her Vestdal orchard", "Photo: Jonas Berg"]


def test_duplicated_caption_is_kept_once() -> None:
    caption = "Crew members walk back to the ferry terminal on Thursday"
    text, removed, captions = clean_text(
        f"The strike ended.\n\n {caption} (photo credit: REUTERS)\n{caption}\n(photo credit: REUTERS)\n\nServices resumed at noon."
    )

    assert text == "The strike ended.\n\nServices resumed at noon."
    assert captions == [caption]
    assert removed == [f"{caption} (photo credit: REUTERS)", caption, "(photo credit: REUTERS)"]


def test_repeated_pull_quote_is_kept_once_but_short_repeats_stay() -> None:
    quote = '"We are trying to do what we can," the minister said.'
    text, removed, _ = clean_text(f"{quote}\n\nYes.\n\nThe talks went on.\n\n{quote}\n\nYes.")

    assert text.count(quote) == 1
    assert text.count("Yes.") == 2
    assert removed == [quote]


def test_unicode_quotes_spaces_and_invisible_characters_are_normalised() -> None:
    text, _, _ = clean_text(
        "\u201cWe\u2019re done,\u201d said the union\u2019s chair\u00a0Ola\u2009Strand.\u200b Prices\u00adfell \u2018sharply\u2019 to 6\u202f500."
    )

    assert text == "\"We're done,\" said the union's chair Ola Strand. Pricesfell 'sharply' to 6 500."


def test_whitespace_is_collapsed_and_paragraph_breaks_kept() -> None:
    text, _, _ = clean_text("  First   paragraph,\tline one.  \r\n\r\n\r\n\n   Second paragraph.\rThird line.\n\n\n")

    assert text == "First paragraph, line one.\n\nSecond paragraph.\n\nThird line."


def test_clean_article_appends_captions_after_the_body_and_keeps_the_title_clean() -> None:
    article = Article(
        id="a",
        title="  The \u201cnew\u201d   bridge ",
        text="The bridge opened.\n\nMayor Sand at the opening (photo credit: NORA LIND)\n\nIt cost 212 million crowns.",
    )

    cleaned = clean_article(article)

    assert cleaned.title == 'The "new" bridge'
    assert cleaned.text == (
        f"The bridge opened.\n\nIt cost 212 million crowns.\n\n{CAPTIONS_HEADER}\n\nMayor Sand at the opening"
    )
    assert cleaned.body_end == len("The bridge opened.\n\nIt cost 212 million crowns.")
    assert cleaned.captions == ("Mayor Sand at the opening",)
    assert cleaned.removed == ("Mayor Sand at the opening (photo credit: NORA LIND)",)


def test_pdf_pages_are_joined_into_paragraphs_with_page_offsets() -> None:
    pages = [
        "Tunnel breaks through\nThe boring machine broke through the last rock wall on Tuesday, eleven\n"
        "months after it started, and engineers cheered.\nThe tunnel will carry two tram tracks under the harbour of the city.",
        "Cost\nThe tunnel cost 640 million crowns, 40 million more than planned by the city\ncouncil in 2021.",
    ]

    cleaned = clean_article(Article(id="t", title="Tunnel", text=""), pages=pages)

    assert "eleven months after it started" in cleaned.text
    assert "\n\nThe tunnel will carry two tram tracks" in cleaned.text  # a short last line ended the paragraph
    assert cleaned.pages == (0, cleaned.text.index("Cost"))
    assert cleaned.page_at(cleaned.text.index("640 million")) == 2
