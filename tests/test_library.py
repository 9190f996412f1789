"""Uploads in the library: the server's file names for them (never paths, never shared by two names)."""

from __future__ import annotations

import re

import pytest

from assistant.library import MAX_SLUG_BYTES, NAME_HASH_DIGITS, safe_name

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
