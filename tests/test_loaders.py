"""Reading article files: every format, its metadata, stable ids, and every kind of bad input."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from assistant.settings import Settings
from ingest.loaders import load_file, load_paths, stable_id
from ingest.models import Article
from ingest.pdf_worker import PDF_MAX_MEMORY_MB, PDF_TIMEOUT_S, PdfLimits


def only(path: Path) -> Article:
    """The one article a file gives (failing the test with the skip reason otherwise)."""
    result = load_file(path)
    assert not result.skipped, result.skipped
    assert len(result.articles) == 1
    return result.articles[0]


def by_id(folder: Path) -> dict[str, Article]:
    result = load_paths([folder])
    assert result.skipped == []
    return {article.id: article for article in result.articles}


# -- txt and md --------------------------------------------------------------------------------


def test_txt_front_matter_gives_metadata_and_stays_out_of_the_text(corpus: Path) -> None:
    article = by_id(corpus)["bridge"]

    assert article.title == "Larsholm opens its new harbour bridge"
    assert article.published == "2024-05-14"
    assert article.source == "Larsholm Gazette"
    assert article.url == "https://example.org/larsholm-gazette/2024/05/14/harbour-bridge"
    assert article.author == "Nora Lind"
    assert article.path == str(corpus / "bridge.txt")
    assert article.text.startswith("The new harbour bridge in Larsholm opened")
    assert "1,240 metres" in article.text
    assert "source:" not in article.text and "Nora Lind" not in article.text


def test_txt_without_front_matter_takes_its_title_from_the_first_line(corpus: Path) -> None:
    article = by_id(corpus)["ferry"]

    assert article.title == "Ferry crews end four-day strike in Larsholm"
    assert article.text.startswith("Ferry crews in Larsholm ended their four-day strike")
    assert (article.source, article.published, article.url, article.author) == ("", "", "", "")


def test_txt_body_opening_with_a_colon_is_not_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("Council rejects toll plan\n\nNote: the vote was 7 to 4. The toll would have been 3 crowns.\n")

    article = only(path)

    assert article.title == "Council rejects toll plan"
    assert article.text.startswith("Note: the vote was 7 to 4.")


def test_md_front_matter_wins_and_the_repeated_heading_leaves_the_text(corpus: Path) -> None:
    article = by_id(corpus)["orchard"]

    assert article.title == "Apple harvest in Vestdal hits a record 41,500 tonnes"
    assert (article.published, article.source, article.author) == ("2024-10-02", "Farm Weekly", "Jonas Berg")
    assert article.text.startswith("Growers in the Vestdal valley picked 41,500 tonnes")
    assert "#" not in article.text
    assert "---" not in article.text


@pytest.mark.parametrize("name", ["lede.txt", "lede.md"])
def test_a_first_line_too_long_for_a_headline_stays_text(tmp_path: Path, name: str) -> None:
    lede = "The harbour office counted 1,204 boats in the marina on Sunday, the most since 2015. " * 5
    path = _write(tmp_path / name, lede + "\n\nA second paragraph.\n")

    article = only(path)

    assert article.title == "lede" and "1,204 boats" in article.text and "A second paragraph." in article.text


def test_md_heading_is_the_title_without_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "pool.md"
    path.write_text(
        "# Lido reopens for the summer\n\nThe Brightwater lido reopened on Saturday with water at 24 degrees.\n\n## Prices\n\nEntry costs 6 euros.\n"
    )

    article = only(path)

    assert article.title == "Lido reopens for the summer"
    assert article.text.startswith("The Brightwater lido reopened")
    assert "Prices" in article.text and "#" not in article.text


def test_demo_txt_and_md_files(demo_dir: Path) -> None:
    putin = only(demo_dir / "putin-gaza.txt")
    ecb = only(demo_dir / "ecb-rate-cut.md")

    assert putin.title.startswith("Putin blames Washington for Gaza war")
    assert (putin.published, putin.source, putin.author) == ("2024-06-06", "The Daily Ledger", "Mara Ellison")
    assert not putin.text.startswith(putin.title)  # the body repeated the headline
    assert ecb.title == "ECB cuts interest rates for the first time since 2019"
    assert "3.75%" in ecb.text and "#" not in ecb.text


# -- html --------------------------------------------------------------------------------------


def test_html_main_text_and_metadata_via_trafilatura(demo_dir: Path) -> None:
    article = only(demo_dir / "harborton-marathon.html")

    assert article.id == "harborton-marathon"
    assert article.title == "Kiprono smashes Harborton Marathon course record in 2:05:41"
    assert article.source == "The Meridian Post"
    assert article.author == "Clara Benning"
    assert article.published == "2024-10-13"
    assert article.url == "https://example.org/meridian-post/sport/2024/10/13/harborton-marathon-record"
    assert "took 77 seconds off the previous mark of 2:06:58" in article.text
    assert "Amina Tesfaye" in article.text
    for furniture in (
        "Sign in",
        "Subscribe to our newsletter",
        "Related stories",
        "Privacy policy",
        "All rights reserved",
        "gtag",
    ):
        assert furniture not in article.text
    assert not article.text.startswith(article.title)


def test_html_team_page_with_meta_tags(tmp_path: Path) -> None:
    path = tmp_path / "ferry-deal.html"
    path.write_text(
        """<!doctype html><html><head><title>Ferry deal approved | Bay Herald</title>
        <meta name="author" content="Ines Dahl"><meta property="og:site_name" content="Bay Herald">
        <meta property="og:title" content="Ferry deal approved">
        <meta property="article:published_time" content="2024-05-02T08:00:00Z"></head>
        <body><nav><a href="/">Home</a> <a href="/news">News</a></nav>
        <article><h1>Ferry deal approved</h1>
        <p>Ferry crews in Larsholm approved a new pay deal on Thursday, ending a four-day strike. The agreement gives crews a 6.5% rise.</p>
        <p>The union said 420 crew members had voted and 81% backed the deal. Services resumed at noon on the same day.</p>
        </article><footer>Contact us</footer></body></html>""",
        encoding="utf-8",
    )

    article = only(path)

    assert (article.title, article.author, article.source, article.published) == (
        "Ferry deal approved",
        "Ines Dahl",
        "Bay Herald",
        "2024-05-02",
    )
    assert "420 crew members" in article.text
    assert "Contact us" not in article.text and "Home" not in article.text


# -- pdf ---------------------------------------------------------------------------------------

PDF_PAGE_1 = (
    "Harbour tunnel boring machine breaks through\n"
    "The boring machine digging the new harbour tunnel in Larsholm broke through the last rock wall on Tuesday, "
    "eleven months after it started. Engineers said the machine advanced about nine metres a day.\n"
    "The tunnel will carry two tram tracks under the harbour."
)
PDF_PAGE_2 = (
    "Cost and opening\n"
    "The tunnel cost 640 million crowns, 40 million more than planned. "
    "The first trams are due to run through it in August 2026."
)


def test_pdf_text_per_page_with_page_numbers(tmp_path: Path, make_pdf: Callable[..., Path]) -> None:
    path = make_pdf(
        tmp_path / "tunnel.pdf",
        [PDF_PAGE_1, PDF_PAGE_2],
        title="Harbour tunnel boring machine breaks through",
        author="Ola Strand",
        created=datetime(2024, 4, 2, 9, 30, tzinfo=UTC),
    )

    article = only(path)

    assert article.id == "tunnel"
    assert article.title == "Harbour tunnel boring machine breaks through"
    assert article.author == "Ola Strand"
    assert article.published == "2024-04-02"
    assert len(article.pages) == 2 and article.pages[0] == 0
    assert article.page_at(article.text.index("nine metres a day")) == 1
    assert article.page_at(article.text.index("640 million crowns")) == 2
    assert article.text.index("640 million crowns") >= article.pages[1]
    assert not article.text.startswith(article.title)


def test_pdf_title_from_first_line_when_metadata_has_none(tmp_path: Path, make_pdf: Callable[..., Path]) -> None:
    article = only(make_pdf(tmp_path / "untitled.pdf", [PDF_PAGE_1, PDF_PAGE_2]))

    assert article.title == "Harbour tunnel boring machine breaks through"
    assert article.text.startswith("The boring machine digging")


def test_a_pdf_past_its_deadline_is_skipped_and_the_batch_goes_on(
    tmp_path: Path, make_pdf: Callable[..., Path]
) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    make_pdf(folder / "a-tunnel.pdf", [PDF_PAGE_1, PDF_PAGE_2] * 5)
    (folder / "b-note.txt").write_text("Harbour note\n\nThe ferry left at noon on Monday.\n", encoding="utf-8")

    result = load_paths([folder], pdf_limits=PdfLimits(timeout_s=0.001))  # no child starts, let alone reads, this fast

    assert [article.id for article in result.articles] == ["b-note"], "one stalled PDF never stops the others"
    [skipped] = result.skipped
    assert skipped.path.endswith("a-tunnel.pdf")
    assert "longer than 0.001 s" in skipped.reason and "pdf_timeout_s" in skipped.reason


def test_a_pdf_over_its_memory_limit_is_skipped(tmp_path: Path, make_pdf: Callable[..., Path]) -> None:
    path = make_pdf(tmp_path / "tunnel.pdf", [PDF_PAGE_1, PDF_PAGE_2])

    result = load_file(path, pdf_limits=PdfLimits(max_memory_mb=16))  # less than Python itself takes

    assert result.articles == []
    assert "16 MB" in result.skipped[0].reason and "pdf_max_memory_mb" in result.skipped[0].reason


def test_pdf_limits_come_from_the_settings() -> None:
    assert Settings().pdf_limits == PdfLimits(timeout_s=PDF_TIMEOUT_S, max_memory_mb=PDF_MAX_MEMORY_MB)
    limits = Settings(pdf_timeout_s=2.5, pdf_max_memory_mb=512).pdf_limits
    assert limits == PdfLimits(timeout_s=2.5, max_memory_mb=512)


def test_demo_pdf_keeps_page_two_facts_on_page_two(demo_dir: Path) -> None:
    article = only(demo_dir / "kestrel-1-launch.pdf")

    assert article.title == "Kestrel-1 weather satellite reaches orbit"
    assert article.published == "2024-03-19"
    assert article.author == "Amelie Strand"
    assert article.page_at(article.text.index("Nordvik Spaceport")) == 1
    assert article.page_at(article.text.index("310 million euros")) == 2
    # wrapped lines are joined into paragraphs, not left broken mid-sentence
    assert "after lifting off at 06:42" in article.text


# -- json and jsonl ----------------------------------------------------------------------------


def test_jsonl_given_ids_and_path_derived_ids(corpus: Path) -> None:
    articles = by_id(corpus)

    museum, tram = articles["brief-museum"], articles["briefs/2"]
    assert museum.title == "Museum of Maps reopens after 14-month renovation"
    assert (museum.source, museum.published, museum.author) == ("City Desk", "2024-03-08", "Ola Strand")
    assert museum.url == "https://example.org/city-desk/museum-of-maps"
    assert museum.path == f"{corpus / 'briefs.jsonl'}:1"
    assert "86,000 maps" in museum.text
    assert tram.title == "Tram line 7 extended to Northgate"
    assert tram.published == "2024-03-11"  # "March 11, 2024" normalised
    assert tram.path == f"{corpus / 'briefs.jsonl'}:2"


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("bridge.txt", ["upload/bridge"]),  # no id asked for
        ("orchard.md", ["upload/orchard"]),
        ("briefs.jsonl", ["upload/briefs/brief-museum", "upload/briefs/2"]),
    ],
)
def test_a_namespace_keeps_every_id_inside_it(corpus: Path, name: str, ids: list[str]) -> None:
    result = load_file(corpus / name, root=corpus, namespace="upload")
    assert [article.id for article in result.articles] == ids and result.skipped == []


@pytest.mark.parametrize(
    ("name", "text", "asked", "expected"),
    [
        ("notes.txt", "id: beta\ntitle: Notes\n\nThe ferry left at noon.\n", "beta", "upload/notes"),
        ("notes.md", "---\nid: ../../beta\n---\n# Notes\n\nThe ferry left at noon.\n", "../../beta", "upload/notes"),
        (
            "wire.jsonl",
            '{"id": "alpha", "title": "A", "text": "The ferry left at noon."}',
            "alpha",
            "upload/wire/alpha",
        ),
        (
            "wire.json",
            '[{"id": "upload/x", "title": "A", "text": "The ferry left."}]',
            "upload/x",
            "upload/wire/upload/x",
        ),
    ],
)
def test_an_id_asked_for_in_a_namespace_is_not_used_and_the_note_says_so(
    tmp_path: Path, name: str, text: str, asked: str, expected: str
) -> None:
    (tmp_path / name).write_text(text)
    [article] = load_file(tmp_path / name, root=tmp_path, namespace="upload").articles
    assert article.id == expected
    assert article.notes == (
        f"asked for id {asked!r}; stored as {expected!r} instead: the server chooses the ids under upload/",
    )
    assert load_file(tmp_path / name, root=tmp_path).articles[0].id == asked, (
        "without a namespace the file's id is kept"
    )


def test_pdf_front_matter_id_stays_inside_a_namespace(tmp_path: Path, make_pdf: Callable[..., Path]) -> None:
    path = make_pdf(tmp_path / "report.pdf", ["id: alpha\ntitle: Report\n\nThe ferry left at noon on Monday."])
    [article] = load_file(path, root=tmp_path, namespace="upload").articles
    assert article.id == "upload/report" and "asked for id 'alpha'" in article.notes[0]
    assert load_file(path, root=tmp_path).articles[0].id == "alpha"


def test_json_array_gives_one_article_per_object_with_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "desk.json"
    records = [
        {"title": "Library extends opening hours", "text": "The central library will open until 22:00 from May."},
        {"title": "Bus fares frozen", "text": "Bus fares in Larsholm will stay at 3 crowns until 2026."},
        {"id": "desk-parks", "title": "Two new parks", "text": "The city is planting 1,500 trees in two new parks."},
    ]
    path.write_text(json.dumps(records), encoding="utf-8")

    result = load_file(path)

    assert result.skipped == []
    ids = [article.id for article in result.articles]
    assert len(set(ids)) == 3
    assert ids[2] == "desk-parks"
    assert [article.title for article in result.articles] == [record["title"] for record in records]


def test_json_single_object(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(
        json.dumps({"id": "x-1", "title": "Pier repaired", "text": "The north pier reopened after 3 weeks of repairs."})
    )

    article = only(path)

    assert (article.id, article.title) == ("x-1", "Pier repaired")


def test_jsonl_record_without_text_is_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"id": "ok", "title": "Fine", "text": "Some text here."}\n{"id": "bad", "title": "No body"}\n')

    result = load_file(path)

    assert [article.id for article in result.articles] == ["ok"]
    assert [(skip.path, "text" in skip.reason) for skip in result.skipped] == [(f"{path}:2", True)]


# -- ids ---------------------------------------------------------------------------------------


def test_ids_derive_from_the_path_below_the_named_folder_and_are_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "news"
    (folder / "2024" / "may").mkdir(parents=True)
    (folder / "2024" / "may" / "Bridge Opening!.txt").write_text("Bridge opens\n\nThe bridge opened on Tuesday.\n")

    absolute = load_paths([folder]).articles
    monkeypatch.chdir(tmp_path)
    relative = load_paths(["news"]).articles

    assert [article.id for article in absolute] == ["2024/may/Bridge-Opening"]
    assert [article.id for article in relative] == ["2024/may/Bridge-Opening"]
    assert (
        stable_id(Path("/elsewhere/news/2024/may/Bridge Opening!.txt"), Path("/elsewhere/news"))
        == "2024/may/Bridge-Opening"
    )


def test_a_single_file_gets_its_stem_as_id(corpus: Path) -> None:
    assert only(corpus / "bridge.txt").id == "bridge"


def test_folders_are_read_recursively_skipping_hidden_and_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.md").write_text("# Deep\n\nA deep article with 5 facts.\n")
    (tmp_path / "a" / ".cache").mkdir()
    (tmp_path / "a" / ".cache" / "hidden.txt").write_text("Hidden\n\nShould not be read.\n")
    (tmp_path / "a" / "photo.jpg").write_bytes(b"\xff\xd8\xff")

    result = load_paths([tmp_path / "a"])

    assert [article.id for article in result.articles] == ["b/deep"]
    assert result.skipped == []


# -- bad input ---------------------------------------------------------------------------------

LATIN1_TEXT = (
    "Le café de la gare rouvre à Münster\n\n"
    "Le café de la gare a rouvert lundi à Münster après des travaux. "
    "Il sert désormais 300 crème brûlée par jour, a déclaré la gérante Zoë Müller.\n"
)


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# (file name, content or None for "do not create", expected reason fragment)
SKIPPED_INPUTS = [
    pytest.param("empty.txt", b"", "empty", id="empty-file"),
    pytest.param("blank.md", "   \n\n  \n", "no article text", id="whitespace-only"),
    pytest.param("title-only.txt", "Just a headline\n", "no article text", id="title-only"),
    pytest.param("image.txt", bytes(range(256)) * 16, "binary", id="binary-with-txt-extension"),
    pytest.param("noise.txt", bytes(range(1, 256)) * 16, "binary", id="binary-without-nul-bytes"),
    pytest.param("scan.pdf", bytes(range(7, 250)) * 20, "cannot parse PDF", id="garbage-pdf"),
    pytest.param("truncated.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "cannot parse PDF", id="truncated-pdf"),
    pytest.param(
        "menu.html",
        "<html><body><nav><a href='/'>Home</a></nav><script>var a = 1;</script></body></html>",
        "no article text",
        id="html-without-article",
    ),
    pytest.param("plain.html", "this file has no markup at all", "not HTML", id="html-without-tags"),
    pytest.param("list.json", '[{"title": "A", "text": "B"', "invalid JSON", id="broken-json-array"),
    pytest.param("numbers.json", "[1, 2]", "expected a JSON object", id="json-not-objects"),
    pytest.param(
        "report.docx", b"PK\x03\x04 not really a docx", "unsupported file type .docx", id="unsupported-extension"
    ),
    pytest.param("missing.txt", None, "no such file", id="missing-path"),
]


@pytest.mark.parametrize(("name", "content", "reason"), SKIPPED_INPUTS)
def test_bad_input_is_skipped_with_the_file_and_a_reason(
    tmp_path: Path, name: str, content: str | bytes | None, reason: str
) -> None:
    path = tmp_path / name
    if content is not None:
        _write(path, content)

    result = load_paths([path])

    assert result.articles == []
    assert len(result.skipped) >= 1
    for skipped in result.skipped:
        assert name in skipped.path
        assert reason in skipped.reason, skipped.reason


@pytest.mark.parametrize("layout", ["self", "pair", "chain"])
def test_symbolic_link_loops_are_named_as_such(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "loops"
    folder.mkdir()
    (folder / "real.txt").write_text("Real story\n\nThe harbour office counted 1,204 boats on Sunday.\n")
    links = {"self": [("a.txt", "a.txt")], "pair": [("a.txt", "b.txt"), ("b.txt", "a.txt")]}.get(
        layout, [("a.txt", "b"), ("b", "c.md"), ("c.md", "a.txt")]
    )
    for name, target in links:
        (folder / name).symlink_to(target)

    named = load_paths([folder / "a.txt"])
    whole = load_paths([folder])

    assert [s.path for s in named.skipped] == [str(folder / "a.txt")] and "symbolic link loop" in named.skipped[
        0
    ].reason
    assert [a.title for a in whole.articles] == ["Real story"], "the loops do not stop the batch"
    looping = {Path(s.path).name for s in whole.skipped}
    assert looping == {name for name, _ in links} and all("symbolic link loop" in s.reason for s in whole.skipped)
    (folder / "real.txt").unlink()
    only_loops = load_paths([folder])
    assert only_loops.skipped and all("symbolic link loop" in s.reason for s in only_loops.skipped)
    assert not any("no supported files" in s.reason for s in only_loops.skipped)


def test_a_link_to_nothing_says_where_it_points(tmp_path: Path) -> None:
    (tmp_path / "gone.txt").symlink_to(tmp_path / "deleted.txt")

    [skipped] = load_paths([tmp_path / "gone.txt"]).skipped

    assert "broken symbolic link" in skipped.reason and "deleted.txt" in skipped.reason


def test_file_over_the_size_limit_is_skipped_with_both_sizes(tmp_path: Path) -> None:
    path = _write(tmp_path / "huge.txt", "Huge file\n\n" + "All work and no play. " * 60_000)  # about 1.3 MB

    result = load_file(path, max_bytes=1024 * 1024)

    assert result.articles == []
    [skipped] = result.skipped
    assert skipped.path == str(path)
    assert skipped.reason == "file is 1.26 MB, over the 1 MB limit (raise max_file_mb)"


@pytest.mark.parametrize(
    ("size", "limit", "reason"),
    [
        (1207, 1000, "file is 0.00115 MB, over the 0.000954 MB limit"),  # not "0 MB over the 0 MB limit"
        (20 * 2**20 + 4096, 20 * 2**20, "file is 20.0039 MB, over the 20 MB limit"),  # not "20 MB over 20 MB"
    ],
)
def test_size_limit_message_tells_the_sizes_apart(tmp_path: Path, size: int, limit: int, reason: str) -> None:
    path = _write(tmp_path / "big.txt", b"Big\n\n" + b"x" * (size - 5))

    [skipped] = load_file(path, max_bytes=limit).skipped

    assert skipped.reason.startswith(reason)


def test_invalid_utf8_is_decoded_as_latin1_with_a_note(tmp_path: Path) -> None:
    path = _write(tmp_path / "cafe.txt", LATIN1_TEXT.encode("latin-1"))

    article = only(path)

    assert article.title == "Le café de la gare rouvre à Münster"
    assert "300 crème brûlée par jour" in article.text
    assert "Zoë Müller" in article.text
    assert len(article.notes) == 1 and "not valid UTF-8" in article.notes[0]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("name", ["cafe.txt", "cafe.md", "cafe.html", "cafe.jsonl"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(tmp_path: Path, encoding: str, name: str) -> None:
    title, body = LATIN1_TEXT.split("\n", 1)
    if name.endswith(".jsonl"):
        text = json.dumps({"title": title, "text": body}, ensure_ascii=False) + "\n"
    elif name.endswith(".html"):
        paragraphs = "".join(f"<p>{line}</p>" for line in body.split("\n") if line.strip())
        text = f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{paragraphs}</article></body></html>"
    else:
        text = LATIN1_TEXT
    boms = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }
    data = boms.get(encoding, b"") + text.encode(encoding)  # "utf-16"/"utf-32" write their own mark
    article = only(_write(tmp_path / name, data))

    assert article.title == "Le café de la gare rouvre à Münster"
    assert "300 crème brûlée par jour" in article.text and "\x00" not in article.text
    assert article.notes == ()


def test_a_byte_order_mark_on_text_that_does_not_follow_it_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "odd.txt", codecs.BOM_UTF16_LE + "Title\n\nBody text here.".encode("utf-16-le") + b"\x00")

    [skipped] = load_file(path).skipped

    assert "UTF-16 byte order mark" in skipped.reason and "UTF-8" in skipped.reason


def test_invalid_utf8_that_no_encoding_explains_keeps_the_text_with_replacements(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mixed.txt",
        b"Mostly fine\n\nThe council met on Monday and voted 7 to 4. " * 20 + b"\xff\xfe broken tail.\n",
    )

    article = only(path)

    assert "voted 7 to 4" in article.text
    assert article.notes and "not valid UTF-8" in article.notes[0]


def test_broken_html_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "cut-off.html",
        "<html><head><title>Ferry strike ends</title></head><body><article><h1>Ferry strike ends</h1>"
        "<p>Ferry crews in Larsholm ended their strike on Thursday after a 6.5% pay rise was agreed. Services resumed at noon.</p>"
        "<p>The union said 420 crew members voted on the deal, and 81% backed <b>it. The operator lost 2.1 million crow",
    )

    article = only(path)

    assert article.title == "Ferry strike ends"
    assert "6.5% pay rise" in article.text and "420 crew members" in article.text
    assert "<b>" not in article.text


def test_jsonl_with_a_malformed_line_keeps_the_others_and_names_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "feed.jsonl",
        '{"id": "one", "title": "First", "text": "The first article has 11 words in it, more or less."}\n'
        '{"id": "two", "title": "Second", "text": "broken\n'
        "\n"
        '{"id": "three", "title": "Third", "text": "The third article is fine too."}\n',
    )

    result = load_file(path)

    assert [article.id for article in result.articles] == ["one", "three"]
    [skipped] = result.skipped
    assert skipped.path == f"{path}:2"
    assert "invalid JSON" in skipped.reason


BODY = "The harbour office counted 1,204 boats in the marina on Sunday, the most since 2015."
NOT_WEB_URLS = [
    "javascript:alert(1)",
    " JavaScript:alert(1)",
    "file:///etc/passwd",
    "data:text/html,<script>alert(1)</script>",
    "ftp://example.org/a.txt",
    "https:///no-host",
    "//example.org/no-scheme",
    "example.org/article",
    "http://[::1",
]


@pytest.mark.parametrize("url", NOT_WEB_URLS)
@pytest.mark.parametrize("form", ["jsonl", "front matter", "md front matter"])
def test_an_url_that_is_not_http_is_dropped_with_a_note(tmp_path: Path, url: str, form: str) -> None:
    if form == "jsonl":
        path = tmp_path / "wire.jsonl"
        path.write_text(json.dumps({"id": "boats", "title": "Boats", "text": BODY, "url": url}) + "\n")
    elif form == "front matter":
        path = tmp_path / "boats.txt"
        path.write_text(f"title: Boats\nurl: {url}\n\n{BODY}\n")
    else:
        path = tmp_path / "boats.md"
        path.write_text(f"---\ntitle: Boats\nurl: {url}\n---\n\n{BODY}\n")
    article = only(path)
    assert article.url == "" and BODY in article.text
    assert any("dropped" in note and "http(s)" in note and url.strip()[:20] in note for note in article.notes)


@pytest.mark.parametrize("url", ["https://example.org/a?b=1#c", "http://127.0.0.1:8080/x", "HTTPS://Example.org/"])
def test_web_urls_are_kept(tmp_path: Path, url: str) -> None:
    path = tmp_path / "boats.txt"
    path.write_text(f"title: Boats\nurl: {url}\n\n{BODY}\n")
    article = only(path)
    assert article.url == url and article.notes == ()


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path, corpus: Path) -> None:
    _write(corpus / "empty.txt", b"")
    _write(corpus / "binary.txt", bytes(range(256)) * 4)

    result = load_paths([corpus, tmp_path / "nowhere"])

    assert {article.id for article in result.articles} == {"bridge", "orchard", "ferry", "brief-museum", "briefs/2"}
    assert sorted(Path(skip.path).name for skip in result.skipped) == ["binary.txt", "empty.txt", "nowhere"]


def test_load_file_refuses_an_unsupported_extension_too(tmp_path: Path) -> None:
    path = _write(tmp_path / "slides.pptx", "Quarterly results\n\nRevenue rose 4%.\n")

    result = load_file(path)

    assert result.articles == []
    assert [(skip.path, "unsupported file type .pptx" in skip.reason) for skip in result.skipped] == [(str(path), True)]
