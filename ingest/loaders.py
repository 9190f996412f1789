"""Read article files (txt, md, html, pdf, json, jsonl) into `Article`s, reporting what cannot be read as `Skipped`."""

from __future__ import annotations

import codecs
import errno
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from ingest.cleaning import clean_article
from ingest.models import Article, Skipped
from ingest.pdf_worker import PdfLimits, PdfReadError, read_pdf

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
JSON_SUFFIXES = {".json", ".jsonl"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES | PDF_SUFFIXES

FRONT_MATTER_KEYS = {
    "title": "title",
    "date": "published",
    "published": "published",
    "source": "source",
    "outlet": "source",
    "url": "url",
    "link": "url",
    "author": "author",
    "by": "author",
    "id": "id",
}
# A first line longer than this is not taken for a headline (headlines run to about 100 characters).
MAX_TITLE_CHARS = 300
_FRONT_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


class LoadError(Exception):
    """A file that cannot be turned into an article; the message says why."""


@dataclass(frozen=True)
class LoadResult:
    """What reading some paths gave: articles and the files or lines that were skipped."""

    articles: list[Article]
    skipped: list[Skipped]


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, Path] | Skipped]:
    """Expand files and folders (recursively, sorted) into (file, root) pairs; missing paths become `Skipped`.

    The root is the folder the user named (or the file's own folder): ids derive from the path below it.
    """
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            yield Skipped(str(path), _missing(path))
        elif path.is_dir():
            found = False
            for child in sorted(path.rglob("*")):
                if _hidden(child, path):
                    continue
                if child.is_file() and child.suffix.lower() in SUPPORTED_SUFFIXES:
                    found = True
                    yield child, path
                elif child.is_symlink() and not child.exists() and _missing(child) == LINK_LOOP:
                    found = True  # said why: "holds no supported files" would hide it
                    yield Skipped(str(child), LINK_LOOP)
            if not found:
                yield Skipped(str(path), f"folder holds no supported files ({', '.join(sorted(SUPPORTED_SUFFIXES))})")
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            yield _unsupported(path)
        else:
            yield path, path.parent


LINK_LOOP = "symbolic link loop: the link leads back to itself through other links; point it at a file or remove it"


def _missing(path: Path) -> str:
    """Why a path that does not exist cannot be read: a link loop, a link to nothing, or simply nothing there."""
    if not path.is_symlink():
        return "no such file or folder"
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python before 3.13 reports a loop this way
        return LINK_LOOP
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LINK_LOOP
    return f"broken symbolic link: it points to {str(path.readlink())!r}, which does not exist"


def _unsupported(path: Path) -> Skipped:
    return Skipped(
        str(path),
        f"unsupported file type {path.suffix or '(none)'}: use one of {', '.join(sorted(SUPPORTED_SUFFIXES))}",
    )


def _hidden(child: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in child.relative_to(root).parts)


def stable_id(path: Path, root: Path | None = None) -> str:
    """An id from the file's path below `root`, without its suffix: `examples/articles/a/b.txt` -> `a/b`.

    The same file ingested from the same folder always gets the same id, on any machine.
    """
    try:
        relative = path.relative_to(root) if root is not None else Path(path.name)
    except ValueError:
        relative = Path(path.name)
    parts = [re.sub(r"[^\w.-]+", "-", part).strip("-") for part in relative.with_suffix("").parts]
    return "/".join(part for part in parts if part) or "article"


@dataclass(frozen=True)
class FileIds:
    """How the articles of one file get their ids: `base` comes from the file's path, inside `namespace` if given.

    Without a namespace (the CLI) an id the file asks for (front matter `id:`, a JSON record's `id`) is used
    as given. With one (uploads), every id stays under `namespace/base`, so a file can neither name nor
    replace an article it did not create; a note says which id it got instead of the one it asked for.

    >>> FileIds.of(Path("up/wire-1f2e.jsonl"), Path("up"), "upload").record("alpha", 1)
    ('upload/wire-1f2e/alpha', ("asked for id 'alpha'; stored as 'upload/wire-1f2e/alpha' instead: the server chooses the ids under upload/",))
    """

    base: str
    namespace: str | None = None

    @classmethod
    def of(cls, path: Path, root: Path | None, namespace: str | None) -> FileIds:
        own = stable_id(path, root)
        return cls(f"{namespace}/{own}" if namespace else own, namespace)

    def article(self, asked: str) -> tuple[str, tuple[str, ...]]:
        """The id of a file's one article (text, HTML, PDF) and the notes about it."""
        return self._choose(asked, self.base)

    def record(self, asked: str, number: int) -> tuple[str, tuple[str, ...]]:
        """The id of record `number` (line or position) of a JSON file and the notes about it."""
        return self._choose(asked, f"{self.base}/{asked or number}")

    def _choose(self, asked: str, own: str) -> tuple[str, tuple[str, ...]]:
        if not asked or self.namespace is None:
            return asked or own, ()
        if asked == own:
            return own, ()
        return own, (
            f"asked for id {asked!r}; stored as {own!r} instead: the server chooses the ids under {self.namespace}/",
        )


def load_file(
    path: Path,
    max_bytes: int = 20 * 1024 * 1024,
    root: Path | None = None,
    namespace: str | None = None,
    pdf_limits: PdfLimits = PdfLimits(),  # noqa: B008 (a frozen value)
    title: str = "",
) -> LoadResult:
    """Read one file into articles (several for JSON Lines). Never raises for bad content: it reports it.

    With `namespace` every article's id is `namespace/<id from the path>[/<record>]` (see `FileIds`).
    A PDF is read in a child process within `pdf_limits` (time and memory); past them it is skipped.
    A `title` given beside the file (an upload's form) means a text file's first line is text, not its title.
    """
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return LoadResult([], [_unsupported(path)])
    try:
        size = path.stat().st_size
    except OSError as exc:
        return LoadResult([], [Skipped(str(path), f"cannot read: {exc.strerror or exc}")])
    if size > max_bytes:
        return LoadResult(
            [],
            [Skipped(str(path), _too_big(size, max_bytes))],
        )
    if size == 0:
        return LoadResult([], [Skipped(str(path), "empty file")])
    suffix = path.suffix.lower()
    ids = FileIds.of(path, root, namespace)
    try:
        if suffix in JSON_SUFFIXES:
            return _load_json(path, ids)
        if suffix in PDF_SUFFIXES:
            articles = [_load_pdf(path, ids, pdf_limits)]
        elif suffix in HTML_SUFFIXES:
            articles = [_load_html(path, ids)]
        else:
            articles = [_load_text(path, ids, title)]
    except LoadError as exc:
        return LoadResult([], [Skipped(str(path), str(exc))])
    return LoadResult(articles, [])


def _too_big(size: int, max_bytes: int) -> str:
    """Both sizes in the unit of `max_file_mb` (MiB), with enough digits to tell them apart (and a small limit from 0)."""
    limit = f"{max_bytes / 2**20:.3g} MB"
    shown = f"{size / 2**20:.3g} MB"
    if shown == limit:
        shown = f"{size / 2**20:.6g} MB"
    return f"file is {shown}, over the {limit} limit (raise max_file_mb)"


def load_paths(
    paths: Iterable[str | Path],
    max_bytes: int = 20 * 1024 * 1024,
    pdf_limits: PdfLimits = PdfLimits(),  # noqa: B008 (a frozen value)
) -> LoadResult:
    """Read every supported file under `paths`; one bad file never stops the others."""
    articles: list[Article] = []
    skipped: list[Skipped] = []
    for item in iter_files(paths):
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        result = load_file(item[0], max_bytes, root=item[1], pdf_limits=pdf_limits)
        articles.extend(result.articles)
        skipped.extend(result.skipped)
    return LoadResult(articles, skipped)


# Byte order marks of the encodings whose text is full of NUL bytes; UTF-32's go first (UTF-32-LE's begins with
# UTF-16-LE's).
BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


def decode_bytes(data: bytes) -> tuple[str, str | None]:
    """Decode text: UTF-16 or UTF-32 when a byte order mark says so, else UTF-8 and then a detected encoding.

    The note says what was done when the text was not what it said it was.
    """
    encoding = next((name for bom, name in BOMS if data.startswith(bom)), None)
    if encoding is not None:
        try:
            return data.decode(encoding), None  # the codec reads the mark and drops it
        except UnicodeDecodeError as exc:
            raise LoadError(
                f"starts with a {encoding.upper()} byte order mark but is not valid {encoding.upper()} "
                f"(byte {exc.start}): save it again as UTF-8"
            ) from exc
    if b"\x00" in data[:8192]:
        raise LoadError("looks like a binary file, not text (NUL bytes found)")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        position = exc.start
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is not None:
        # Short Western text fits several code pages equally well; cp1252 (a superset of latin-1's
        # printable range) is by far the most common, so it wins a tie.
        tied = [match for match in matches if match.chaos <= best.chaos and match.coherence >= best.coherence]
        best = next((match for match in tied if match.encoding == "cp1252"), best)
    if best is not None and best.encoding not in {"utf_8", "utf-8"}:
        text = str(best)
        if _looks_textual(text):
            return text, f"not valid UTF-8 (byte {position}); decoded as {best.encoding}"
    text = data.decode("utf-8", errors="replace")
    if not _looks_textual(text):
        raise LoadError("looks like a binary file, not text (undecodable bytes)")
    return text, f"not valid UTF-8 (byte {position}); undecodable bytes replaced with U+FFFD"


def _looks_textual(text: str) -> bool:
    sample = text[:4096]
    if not sample:
        return False
    bad = sum(1 for ch in sample if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\n\r\t\f"))
    return bad / len(sample) < 0.05


def _read_text(path: Path) -> tuple[str, str | None]:
    try:
        return decode_bytes(path.read_bytes())
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split `key: value` lines at the top (optionally between `---` lines) from the body.

    Only known keys count, so a body that opens with "Note: ..." stays body.
    """
    lines = text.splitlines(keepends=True)
    index = 0
    fenced = bool(lines) and lines[0].strip() == "---"
    if fenced:
        index = 1
    fields: dict[str, str] = {}
    while index < len(lines):
        line = lines[index]
        if fenced and line.strip() == "---":
            index += 1
            break
        if not line.strip():
            if fields or fenced:
                index += 1
                if not fenced:
                    break
                continue
            break
        match = _FRONT_LINE.match(line)
        if not match or match.group(1).lower() not in FRONT_MATTER_KEYS:
            if fenced:
                index += 1
                continue
            break
        fields[FRONT_MATTER_KEYS[match.group(1).lower()]] = match.group(2).strip().strip("\"'")
        index += 1
    if not fields and not fenced:
        return {}, text
    return fields, "".join(lines[index:])


def _load_text(path: Path, ids: FileIds, given_title: str = "") -> Article:
    raw, note = _read_text(path)
    fields, body = split_front_matter(raw)
    article_id, id_notes = ids.article(fields.pop("id", ""))
    title = given_title or fields.get("title", "")
    if not title:
        title, body = _title_from_body(body)
    if not body.strip():
        raise LoadError("no article text after the title")
    if path.suffix.lower() in {".md", ".markdown"}:
        body = _strip_markdown_headings(body, title)
    return _make_article(path, fields | {"id": article_id, "title": title}, body, _notes(note, *id_notes))


def _strip_markdown_headings(body: str, title: str) -> str:
    """Drop a leading heading that repeats the title; keep other headings as plain lines."""
    lines = body.splitlines(keepends=True)
    out = []
    leading = True
    for line in lines:
        heading = _MD_HEADING.match(line)
        if heading and leading and heading.group(1).strip() == title.strip():
            leading = False
            continue
        if line.strip():
            leading = False
        out.append(heading.group(1) + "\n" if heading else line)
    return "".join(out)


def _title_from_body(body: str, limit: int | None = MAX_TITLE_CHARS) -> tuple[str, str]:
    """The first non-empty line is the title (a Markdown heading's text when it is one).

    A first line longer than `limit` is text, not a headline: then there is no title ("") and the body stays
    whole (the article is named after its file).
    """
    lines = body.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.strip():
            heading = _MD_HEADING.match(line)
            title = (heading.group(1) if heading else line).strip()
            if limit is not None and len(title) > limit:
                return "", body
            return title, "".join(lines[index + 1 :])
    return "", body


def drop_repeated_title(body: str, title: str) -> str:
    """Remove the body's first line when it only repeats the title (common in scraped text)."""
    stripped = body.lstrip()
    first, _, rest = stripped.partition("\n")
    if title and first.strip().lstrip("#").strip().lower() == title.strip().lower() and rest.strip():
        return rest
    return body


def _notes(*notes: str | None) -> tuple[str, ...]:
    return tuple(note for note in notes if note)


def checked_url(url: str) -> tuple[str, str | None]:
    """The article URL to keep and a note when it was dropped: only http(s) URLs with a host are links.

    Anything else (`javascript:`, `data:`, `file:///etc/passwd`, a bare word) would reach readers as a link
    they can click, so it is stored as "" and the note says so.

    >>> checked_url("https://example.org/a")
    ('https://example.org/a', None)
    >>> checked_url("javascript:alert(1)")[0]
    ''
    """
    url = url.strip()
    if not url:
        return "", None
    try:
        parts = urlsplit(url)
        ok = parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 host
        ok = False
    if ok:
        return url, None
    shown = url if len(url) <= 80 else url[:77] + "..."
    return "", f"url {shown!r} dropped: only http(s) URLs with a host are kept"


def _make_article(path: Path, fields: dict[str, str], body: str, notes: tuple[str, ...]) -> Article:
    body = drop_repeated_title(body, fields.get("title", ""))
    url, url_note = checked_url(fields.get("url", ""))
    article = Article(
        id=fields["id"],
        title=fields.get("title", "").strip() or path.stem,
        text=body,
        source=fields.get("source", ""),
        url=url,
        published=normalise_date(fields.get("published", "")),
        author=fields.get("author", ""),
        path=str(path),
        notes=_notes(*notes, url_note),
    )
    cleaned = clean_article(article)
    if not cleaned.text.strip():
        raise LoadError("no article text left after removing boilerplate")
    return cleaned


def normalise_date(value: str) -> str:
    """An ISO `YYYY-MM-DD` date from common spellings, or "" when it cannot be read."""
    value = (value or "").strip()
    if not value:
        return ""
    match = re.match(r"(\d{4})-(\d{2})-(\d{2})", value)
    if match:
        return match.group(0)
    try:
        import dateparser

        parsed = dateparser.parse(value, settings={"PREFER_DAY_OF_MONTH": "first", "RETURN_AS_TIMEZONE_AWARE": False})
    except Exception:  # dateparser raises a zoo of errors for odd input; an unknown date is fine
        parsed = None
    return parsed.date().isoformat() if parsed else ""


def _load_html(path: Path, ids: FileIds) -> Article:
    import trafilatura

    raw, note = _read_text(path)
    if "<" not in raw:
        raise LoadError("not HTML: no tags found")
    try:
        document = trafilatura.bare_extraction(raw, with_metadata=True, include_comments=False, include_tables=False)
    except Exception as exc:  # trafilatura/lxml fail in many ways on broken markup
        raise LoadError(f"cannot parse HTML: {exc}") from exc
    data = document.as_dict() if document is not None and not isinstance(document, dict) else (document or {})
    text = str(data.get("text") or "")
    # trafilatura falls back to any text it finds, e.g. a lone "Home" link: a few words are no article.
    if len(text.split()) < 5:
        raise LoadError("no article text found in the HTML (is it a page with an article body?)")
    fields = {"id": ids.article("")[0]} | {
        field: str(data.get(key) or "")
        for field, key in (
            ("title", "title"),
            ("published", "date"),
            ("source", "sitename"),
            ("url", "url"),
            ("author", "author"),
        )
    }
    return _make_article(path, fields, text, _notes(note))


def _load_pdf(path: Path, ids: FileIds, limits: PdfLimits) -> Article:
    """A PDF's article; pypdf reads the file in a child process within `limits` (see `ingest.pdf_worker`)."""
    try:
        pdf = read_pdf(str(path), limits)
    except PdfReadError as exc:
        raise LoadError(str(exc)) from exc
    page_texts = pdf.pages
    if not any(text.strip() for text in page_texts):
        raise LoadError("PDF has no extractable text (scanned? run OCR first)")
    fields = {"title": pdf.title, "author": pdf.author}
    if re.match(r"D:\d{8}", pdf.created):
        digits = pdf.created[2:10]
        fields["published"] = f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}"
    first_page_fields, first_body = split_front_matter(page_texts[0])
    fields |= {key: value for key, value in first_page_fields.items() if value}
    page_texts[0] = first_body
    if not fields.get("title"):
        fields["title"], page_texts[0] = _title_from_body(page_texts[0])
    page_texts[0] = drop_repeated_title(page_texts[0], fields["title"])
    article_id, id_notes = ids.article(fields.get("id", ""))
    url, url_note = checked_url(fields.get("url", ""))
    article = Article(
        id=article_id,
        title=fields.get("title", "") or path.stem,
        text="",
        source=fields.get("source", ""),
        url=url,
        published=normalise_date(fields.get("published", "")),
        author=fields.get("author", ""),
        path=str(path),
        notes=_notes(*id_notes, url_note),
    )
    cleaned = clean_article(article, pages=page_texts)
    if not cleaned.text.strip():
        raise LoadError("no article text left after removing boilerplate")
    return cleaned


def _load_json(path: Path, ids: FileIds) -> LoadResult:
    raw, note = _read_text(path)
    records: list[tuple[int, object]] = []
    skipped: list[Skipped] = []
    stripped = raw.lstrip()
    if path.suffix.lower() == ".json" and stripped[:1] in "[{":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            if stripped[:1] == "[":
                return LoadResult([], [Skipped(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}")])
            data = None  # maybe JSON Lines saved as .json
        if data is not None:
            items = data if isinstance(data, list) else [data]
            records = list(enumerate(items, start=1))  # numbered by position: ids must differ
    if not records:
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                skipped.append(Skipped(f"{path}:{number}", f"invalid JSON on this line: {exc.msg}; line skipped"))
    articles = []
    for number, record in records:
        try:
            articles.append(_article_from_record(path, number, record, note, ids))
        except LoadError as exc:
            skipped.append(Skipped(f"{path}:{number}", str(exc)))
    if not articles and not skipped:
        skipped.append(Skipped(str(path), "no articles in the file"))
    return LoadResult(articles, skipped)


def _article_from_record(path: Path, number: int, record: object, note: str | None, ids: FileIds) -> Article:
    if not isinstance(record, dict):
        raise LoadError("expected a JSON object with 'title' and 'text'")
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise LoadError("field 'text' is missing or empty")
    fields = {key: str(record.get(key) or "") for key in ("title", "url", "source", "author")}
    fields["published"] = str(record.get("published") or record.get("date") or "")
    given_id = record.get("id")
    fields["id"], id_notes = ids.record(str(given_id) if given_id not in (None, "") else "", number)
    if not fields["title"]:
        # Keep the body whole: a record's first line is usually the lede, not a headline.
        fields["title"] = _title_from_body(text, limit=None)[0][:120]
    article = _make_article(path, fields, text, _notes(note, *id_notes))
    return replace(article, path=f"{path}:{number}")
