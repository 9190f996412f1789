"""Question sets: reading a JSONL or CSV question file into `EvalQuestion`s, and the lines it could not use."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.dates import parse_day
from assistant.errors import BadQuestionError, QuestionFileError

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


@dataclass(frozen=True)
class EvalQuestion:
    """One question of a set, holding only what the evaluation uses (`meta` and other fields are dropped).

    `answers` are alternatives (any one counts); none means the articles do not answer the question and
    the right behaviour is to abstain. `source_ids` are the gold articles, `related_ids` other articles
    that hold the answer too (for the lenient scores), `asked_on` the assistant's "today" (YYYY-MM-DD).
    """

    id: str
    question: str
    answers: tuple[str, ...]
    source_ids: tuple[str, ...] = ()
    related_ids: tuple[str, ...] = ()
    asked_on: str = ""
    line: int = 0

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class InvalidQuestion:
    """A line of a question file that was excluded from the run, and why."""

    path: str
    line: int
    reason: str
    id: str = ""

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.reason}"


@dataclass(frozen=True)
class QuestionSet:
    """The usable questions of a file, in file order, and the lines that were not usable."""

    path: str
    questions: tuple[EvalQuestion, ...]
    invalid: tuple[InvalidQuestion, ...]


class _LineError(ValueError):
    """What is wrong with one line (becomes an `InvalidQuestion`)."""


def load_questions(path: str | Path) -> QuestionSet:
    """Read a question file: JSON Lines (`.jsonl`, `.ndjson`, `.json`) or CSV (`.csv`, with a header row).

    Fields: `id`, `question`, `answers` (required; an empty list means unanswerable), optional
    `source_ids`, `related_ids` and `asked_on`. In CSV, a list cell holds alternatives separated by
    `|` or a JSON list (`["a", "b"]`); an empty cell is an empty list. Blank lines are skipped; a line
    that is not usable (bad JSON, a missing or mistyped field, a repeated id) is excluded and reported
    in `invalid` with its line number. Raises `QuestionFileError` when the file itself is unusable or
    holds no valid question at all.

    >>> load_questions("examples/questions.jsonl").questions[0].id     # doctest: +SKIP
    'demo-01'
    """
    file = Path(path)
    if not file.is_file():
        raise QuestionFileError(f"{file}: no such question file" + (" (it is a folder)" if file.is_dir() else ""))
    suffix = file.suffix.lower()
    if suffix not in JSONL_SUFFIXES and suffix != ".csv":
        raise QuestionFileError(f"{file}: unknown question file type {suffix or '(none)'}: use .jsonl or .csv")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QuestionFileError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise QuestionFileError(f"{file}: cannot read it ({exc.strerror})") from exc
    rows = _csv_rows(file, text) if suffix == ".csv" else _jsonl_rows(text)

    questions: list[EvalQuestion] = []
    invalid: list[InvalidQuestion] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        try:
            if isinstance(row, _LineError):
                raise row
            question = _question(row, line)
            if question.id in first_line:
                raise _LineError(f"id {question.id!r} already used on line {first_line[question.id]}")
        except _LineError as exc:
            raw_id = row.get("id") if isinstance(row, dict) else None
            invalid.append(
                InvalidQuestion(str(file), line, str(exc), str(raw_id) if isinstance(raw_id, str | int) else "")
            )
            continue
        first_line[question.id] = line
        questions.append(question)
    if not questions:
        detail = (
            f": {invalid[0]}" + (f" (and {len(invalid) - 1} more bad lines)" if len(invalid) > 1 else "")
            if invalid
            else ""
        )
        raise QuestionFileError(f"{file}: no valid question{detail}")
    return QuestionSet(str(file), tuple(questions), tuple(invalid))


def _jsonl_rows(text: str) -> Iterable[tuple[int, dict[str, Any] | _LineError]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _LineError(f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        yield (
            number,
            record if isinstance(record, dict) else _LineError(f"expected a JSON object, got {type(record).__name__}"),
        )


def _csv_rows(file: Path, text: str) -> Iterable[tuple[int, dict[str, Any] | _LineError]]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise QuestionFileError(
            f"{file}: the CSV file is empty: it needs a header row with id,question,answers"
        ) from None
    except csv.Error as exc:
        raise QuestionFileError(f"{file} line 1: unreadable CSV header ({exc})") from exc
    missing = [name for name in ("id", "question", "answers") if name not in header]
    if missing:
        raise QuestionFileError(
            f"{file} line 1: the CSV header lacks the column(s) {', '.join(missing)} (it has: {', '.join(header)})"
        )
    rows: list[tuple[int, dict[str, Any] | _LineError]] = []
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines: report the row's first line
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append((start, _LineError(f"unreadable CSV row ({exc})")))
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            rows.append((start, _LineError(f"expected {len(header)} CSV fields, got {len(cells)}")))
            continue
        record: dict[str, Any] = dict(zip(header, cells, strict=True))
        try:
            for name in ("answers", "source_ids", "related_ids"):
                if name in record:
                    record[name] = _split_cell(name, record[name])
        except _LineError as exc:
            rows.append((start, exc))
            continue
        rows.append((start, record))
    return rows


def _split_cell(name: str, cell: str) -> list[Any]:
    """A CSV list cell: a JSON list, or alternatives separated by `|` (empty parts dropped)."""
    cell = cell.strip()
    if cell.startswith("["):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise _LineError(f"{name}: {cell[:40]!r} starts like a JSON list but is not one ({exc.msg})") from exc
        if not isinstance(value, list):
            raise _LineError(f"{name}: expected a JSON list")
        return value
    return [part.strip() for part in cell.split("|") if part.strip()]


def _question(record: dict[str, Any], line: int) -> EvalQuestion:
    raw_id = record.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
        raise _LineError(
            "missing or empty 'id'" if raw_id in (None, "") else f"'id' must be a string, not {type(raw_id).__name__}"
        )
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _LineError("missing or empty 'question'" if question in (None, "") else "'question' must be a string")
    if "answers" not in record:
        raise _LineError("missing 'answers' (use [] for a question the articles do not answer)")
    asked_on = record.get("asked_on") or ""
    if asked_on and not (isinstance(asked_on, str) and _is_date(asked_on.strip())):
        raise _LineError(f"'asked_on' {asked_on!r} is not a date like 2024-06-06")
    return EvalQuestion(
        id=str(raw_id).strip(),
        question=question.strip(),
        answers=_strings(record, "answers"),
        source_ids=_strings(record, "source_ids"),
        related_ids=_strings(record, "related_ids"),
        asked_on=asked_on.strip(),
        line=line,
    )


def _strings(record: dict[str, Any], name: str) -> tuple[str, ...]:
    value = record.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _LineError(f"'{name}' must be a list of strings, not {type(value).__name__}")
    items = []
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
            raise _LineError(f"'{name}' item {position + 1} must be a non-empty string, not {item!r}")
        items.append(str(item).strip())
    return tuple(dict.fromkeys(items))


def _is_date(value: str) -> bool:
    """True for a real calendar date written YYYY-MM-DD."""
    try:
        return parse_day(value, "asked_on") is not None
    except BadQuestionError:
        return False
