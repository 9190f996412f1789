"""Uploads in the library: the server's file names for them (never paths, never shared by two names), the upload form's fields."""

from __future__ import annotations

import re

import pytest

from assistant.errors import UploadError
from assistant.library import MAX_FIELD_CHARS, MAX_SLUG_BYTES, NAME_HASH_DIGITS, safe_name, upload_fields
from ingest.models import Article, ArticleFields

# Pairs of different names that once became the same stored file (and so replaced each other's article).
COLLIDING = [
    ("名前.txt", "東京.txt"),
    ("report (1).txt", "report-1.txt"),
    ("x.TXT", "x.txt"),
    ("notes.md", "../notes.md"),
    ("a b.txt", "a_b.txt"),
]


@pytest.mark.parametrize(("first", "second"), COLLIDING)
def test_different_names_never_share_a_stored_file(first: str, second: str) -> None:
    assert safe_name(first) != safe_name(second)
    assert safe_name(first) == safe_name(first), "the same name always maps to the same file (re-upload = update)"


@pytest.mark.parametrize(
    ("name", "slug", "suffix"),
    [
        ("名前.txt", "名前", ".txt"),
        ("Gaza update (2).MD", "Gaza-update-2", ".md"),
        ("../../etc/passwd.txt", "passwd", ".txt"),
        ("C:\\temp\\win.txt", "win", ".txt"),
        (".hidden.txt", "hidden", ".txt"),
        ("---.json", "upload", ".json"),
        ("cafe\u0301.html", "café", ".html"),  # decomposed accents are kept, composed
    ],
)
def test_stored_names_keep_letters_and_digits_and_add_a_hash(name: str, slug: str, suffix: str) -> None:
    assert re.fullmatch(rf"{re.escape(slug)}-[0-9a-f]{{{NAME_HASH_DIGITS}}}{re.escape(suffix)}", safe_name(name))


def test_long_names_fit_the_file_system() -> None:
    stored = safe_name("é" * 300 + ".txt")
    assert len(stored.encode()) <= MAX_SLUG_BYTES + NAME_HASH_DIGITS + len("-.json") < 255


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("published", "2 July 2024", "date '2 July 2024' is not a date as YYYY-MM-DD"),
        ("published", "2024-02-30", "date '2024-02-30' is not a date"),
        ("url", "javascript:alert(1)", "url 'javascript:alert(1)' is not a web address"),
        ("url", "file:///etc/passwd", "url 'file:///etc/passwd' is not a web address"),
        ("url", "example.org/seals", "url 'example.org/seals' is not a web address"),
        ("title", "x" * (MAX_FIELD_CHARS + 1), f"title is {MAX_FIELD_CHARS + 1:,} characters long"),
        ("outlet", "y" * (MAX_FIELD_CHARS + 1), "outlet is"),
    ],
)
def test_upload_fields_name_the_field_that_is_wrong(field: str, value: str, says: str) -> None:
    with pytest.raises(UploadError, match=re.escape(says)):
        upload_fields(**{field: value})


def test_upload_fields_replace_only_what_is_given() -> None:
    fields = upload_fields(title="  Seal\ncensus ", outlet="", published="2024-07-02", url="https://example.org/s")
    assert fields == ArticleFields(title="Seal census", source="", published="2024-07-02", url="https://example.org/s")
    article = Article(id="a", title="From the file", text="Text.", source="File Herald", published="2023-01-01")
    changed = fields.apply(article)
    assert (changed.title, changed.source, changed.published, changed.url) == (
        "Seal census",
        "File Herald",
        "2024-07-02",
        "https://example.org/s",
    )
    assert not upload_fields() and upload_fields().apply(article) is article
