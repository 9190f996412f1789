"""The `dossier` command line: ingest and manage articles, ask questions, chat, evaluate and serve."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from assistant.errors import DossierError
from assistant.filters import Filters
from assistant.models import LOW_CONFIDENCE
from assistant.settings import Settings
from assistant.text import printable

if TYPE_CHECKING:
    from assistant.library import Library


def _settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings().with_overrides(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in exc.errors())
        raise DossierError(f"invalid settings ({problems}): check DOSSIER_* variables and dossier.toml") from exc


def _store_override(store: Path | None) -> dict[str, Any]:
    """`--store DIR` means that folder, even when a Chroma server is configured."""
    return {"store": store, "chroma_url": ""} if store is not None else {}


def _library(store: Path | None) -> Library:
    """The library of the configured store (or `--store DIR`), through the same facade the chat and the API use.

    The command line is the store owner's door: `read_only` closes the served ones (chat, API), not this one.
    """
    from assistant.library import Library, StoredArticles
    from assistant.store import Store

    settings = _settings(**_store_override(store))
    return Library(StoredArticles(Store.from_settings(settings), settings), settings.with_overrides(read_only=False))


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Dossier's errors into one clear line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DossierError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)
            sys.exit(1)

    return wrapper


store_option = click.option(
    "--store",
    "store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Store folder (overrides DOSSIER_STORE and dossier.toml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group()
@click.version_option(package_name="dossier")
def cli() -> None:
    """Dossier: ask questions of a folder of news articles, with answers that cite their passages."""


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@store_option
@json_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly
def ingest(paths: tuple[str, ...], store: Path | None, as_json: bool, quiet: bool) -> None:
    """Add or update the articles in PATHS (files or folders: txt, md, html, pdf, json, jsonl).

    Unchanged articles are skipped, changed ones replace their old version, and exact duplicates
    are stored once. Exits non-zero only when nothing could be ingested.

        dossier ingest examples/articles
    """
    report = _library(store).ingest(paths, progress=not quiet and not as_json and sys.stderr.isatty())
    # File names are the user's, whatever they hold: one message stays one line (printable).
    if not as_json:  # in the JSON summary already
        for item in report.skipped:
            click.echo(f"skipped {printable(item.path)}: {printable(item.reason)}", err=True)
    for path, note in report.notes:
        click.echo(f"note {printable(path)}: {printable(note)}", err=True)
    for path, owner in report.duplicates:
        click.echo(f"duplicate {printable(path)}: same text as stored article {printable(owner)}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(
            f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
            f"duplicates {len(report.duplicates)}, skipped {len(report.skipped)}; "
            f"{report.chunks} chunks in {report.seconds:.1f} s ({report.chunks_per_second:.1f} chunks/s)"
        )
    nothing_usable = not (report.stored or report.unchanged or report.duplicates)
    if nothing_usable:
        sys.exit(1)


@cli.command("list")
@store_option
@json_option
@friendly
def list_(store: Path | None, as_json: bool) -> None:
    """List the stored articles, newest first."""
    records = _library(store).articles()
    if as_json:
        click.echo(json.dumps([record.to_dict() for record in records], indent=2))
        return
    if not records:
        click.echo("no articles yet: run dossier ingest PATH")
    for record in records:
        fields = (record.id, record.published or "-", record.source or "-", str(record.chunks), record.title)
        click.echo("\t".join(map(printable, fields)))


@cli.command()
@click.argument("article_id")
@click.option("--raw", is_flag=True, help="Also show what cleaning removed and the captions kept apart.")
@store_option
@json_option
@friendly
def show(article_id: str, raw: bool, store: Path | None, as_json: bool) -> None:
    """Show one article's cleaned text and metadata."""
    record = _library(store).article(article_id)
    if as_json:
        click.echo(json.dumps(record.to_dict(with_text=True), indent=2))
        return
    for key in ("id", "title", "source", "published", "author", "url", "path", "chunks", "ingested_at"):
        click.echo(f"{key}: {printable(str(getattr(record, key)))}")
    click.echo("")
    click.echo(record.text)
    if raw:
        click.echo("\n--- removed by cleaning ---")
        for line in record.removed:
            click.echo(f"- {line}")
        click.echo("--- captions (kept apart, searchable) ---")
        for line in record.captions:
            click.echo(f"- {line}")
        for note in record.notes:
            click.echo(f"note: {printable(note)}")


@cli.command()
@click.argument("article_id")
@store_option
@friendly
def remove(article_id: str, store: Path | None) -> None:
    """Remove an article and all its chunks."""
    count = _library(store).remove(article_id)
    click.echo(f"removed {article_id} ({count} chunks)")


@cli.command()
@store_option
@json_option
@friendly
def stats(store: Path | None, as_json: bool) -> None:
    """Counts of articles, chunks and sources in the store (chunks: those answers can come from)."""
    data = _library(store).stats().to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            click.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


@cli.command()
@store_option
@friendly
def compact(store: Path | None) -> None:
    """Clean the whole store of leftover chunks, and merge the lexical index's segments into one.

    An ingest cleans up only what unfinished or interrupted writes left (the articles their intents name);
    this reads every chunk, also those of a store written by an older version. Each write to the store adds a small segment to the
    lexical (BM25) index kept beside it; many of them make questions slower. Safe to run while other
    processes serve questions or ingest.

        dossier compact
    """
    from assistant.lexical import LexicalIndex
    from assistant.store import Store

    opened = Store.from_settings(_settings(**_store_override(store)))
    swept = opened.sweep(everything=True)
    click.echo(f"leftover chunks deleted: {swept.deleted}")
    index = LexicalIndex(opened)
    before = index.compact()
    click.echo(f"lexical index: {before} segment(s) merged into {len(index.segments)}, {index.size} chunks")


def _filters(source: tuple[str, ...], since: str | None, until: str | None) -> Filters:
    return Filters.parse(source, since=since, until=until)


def question_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by `ask` and `chat`."""
    options = [
        click.option("-k", "k", type=click.IntRange(1, 50), default=None, help="Passages to answer from (default 5)."),
        click.option("--source", multiple=True, help="Only articles from this outlet (repeatable)."),
        click.option("--since", default=None, help="Only articles published on or after YYYY-MM-DD."),
        click.option("--until", default=None, help="Only articles published on or before YYYY-MM-DD."),
        click.option("--as-of", "as_of", default=None, help="Answer as if today were YYYY-MM-DD (default: today)."),
        click.option("--llm", default=None, help="Answerer: extractive (default), ollama:MODEL or openai:MODEL."),
        store_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def render_answer(answer: dict[str, Any]) -> str:
    """An answer's JSON form (`Answer.to_dict()`, as the API sends it) and its numbered sources, as plain text."""
    lines = [answer["text"], ""]
    if answer["abstained"]:
        if answer["closest"]:
            lines.append("Closest passages:")
            for passage in answer["closest"]:
                where = ", ".join(part for part in (passage["source"], passage["published"]) if part)
                lines.append(f"- {passage['title']} ({where}): {passage['text'][:200]}...")
        return "\n".join(lines).rstrip()
    if answer["confidence"] is not None and answer["confidence"] < LOW_CONFIDENCE:
        lines.insert(1, f"(low confidence: {answer['confidence']:.0%}; check the sources)")
    lines.append("Sources:")
    for citation in answer["citations"]:
        where = ", ".join(part for part in (citation["source"], citation["published"]) if part)
        page = f", p. {citation['page']}" if citation["page"] else ""
        lines.append(f"[{citation['n']}] {citation['title']} ({where}{page}) {citation['url']}")
        lines.append(f'    "{citation["sentence"]}"')
    for removed in answer["removed"]:
        lines.append(f"(removed, unsupported: {removed['text']})")
    return "\n".join(lines).rstrip()


@cli.command()
@click.argument("question")
@question_options
@json_option
@click.option("--local", is_flag=True, help="Answer in this process even when a server runs on the store.")
@friendly
def ask(
    question: str,
    k: int | None,
    source: tuple[str, ...],
    since: str | None,
    until: str | None,
    as_of: str | None,
    llm: str | None,
    store: Path | None,
    as_json: bool,
    local: bool,
) -> None:
    """Answer QUESTION from the stored articles, citing the passages it used.

    When `dossier serve` runs on the same store, the question goes to it (no model to load); --local answers
    in this process anyway.

    dossier ask "What figures did Hamas report?"
    """
    from assistant.serving import ask_server, running_url

    settings = _settings(**_store_override(store), llm=llm)
    filters = _filters(source, since, until)
    served = None
    if not local and not llm:  # another answerer than the server's is this process's to run
        asked = {
            "k": k,
            "as_of": as_of,
            "filters": {"sources": list(filters.sources), "since": since, "until": until},
            "include_retrieved": as_json,  # as `--json` prints them when answering here
        }
        url = None if settings.chroma_url else running_url(settings.store)
        served = ask_server(url, settings.api_token, {"question": question, **asked}) if url else None
        if served is not None:
            click.echo(f"(answered by the server running on this store, {url}; --local to answer here)", err=True)
    if served is None:
        from assistant.chain import Assistant

        served = Assistant.from_settings(settings).ask(question, k=k, filters=filters, as_of=as_of).to_dict()
    click.echo(json.dumps(served, indent=2) if as_json else render_answer(served))


@cli.command()
@question_options
@friendly
def chat(
    k: int | None,
    source: tuple[str, ...],
    since: str | None,
    until: str | None,
    as_of: str | None,
    llm: str | None,
    store: Path | None,
) -> None:
    """A conversation in the terminal: follow-up questions keep the context. Empty line or Ctrl-D ends it."""
    from assistant.chain import Assistant

    assistant = Assistant.from_settings(_settings(**_store_override(store), llm=llm))
    filters = _filters(source, since, until)
    history: list[dict[str, str]] = []
    while True:
        try:
            question = click.prompt("you", default="", show_default=False, prompt_suffix="> ")
        except (EOFError, click.Abort):
            break
        if not question.strip():
            break
        try:
            answer = assistant.ask(question, history, k=k, filters=filters, as_of=as_of)
        except DossierError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)
            continue
        click.echo(render_answer(answer.to_dict()) + "\n")
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]


@cli.command("eval")
@click.argument("questions", type=click.Path(path_type=Path))
@click.option(
    "--articles",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Ingest these files or folders first (repeatable); without --store into a cached store reused while they are unchanged.",
)
@store_option
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write results.jsonl, summary.json and report.html to this folder.",
)
@click.option("-k", "k", type=click.IntRange(1, 50), default=None, help="Passages to answer from (default 5).")
@click.option("--llm", default=None, help="Answerer: extractive (default), ollama:MODEL or openai:MODEL.")
@click.option(
    "--compare",
    "compare",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="An earlier --report folder: print and write (compare.json) the differences.",
)
@json_option
@click.option(
    "--workers",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Questions asked in parallel (use 1 for latencies without contention).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N questions.")
@friendly
def eval_(
    questions: Path,
    articles: tuple[Path, ...],
    store: Path | None,
    report_dir: Path | None,
    k: int | None,
    llm: str | None,
    compare: Path | None,
    as_json: bool,
    workers: int,
    limit: int | None,
) -> None:
    """Score Dossier on a question set: retrieval, answers, citations, abstention and latency.

    QUESTIONS is a JSONL or CSV file with id, question and answers (empty: not answerable from the
    articles), and optionally source_ids, related_ids and asked_on. Lines that cannot be used are
    reported and counted, not asked. Exits 0 whenever the run completes, whatever the scores.

    \b
        dossier eval examples/questions.jsonl --articles examples/articles --report eval-report
        dossier eval examples/questions.jsonl --articles examples/articles -k 8 --compare eval-report
    """
    from assistant import evaluation

    run = evaluation.run_eval(
        questions,
        _settings(k=k, llm=llm),
        articles=articles,
        store=store,
        compare=compare,
        workers=workers,
        limit=limit,
        progress=not as_json and sys.stderr.isatty(),
    )
    if report_dir is not None:
        evaluation.write_report(run, report_dir)
    for problem in run.invalid:
        click.echo(f"excluded {printable(str(problem))}", err=True)
    if run.store.ingest and not run.store.reused:
        done = run.store.ingest
        click.echo(
            f"ingested into {run.store.location}: added {done['added']}, updated {done['updated']}, "
            f"unchanged {done['unchanged']}",
            err=True,
        )
    elif articles:
        click.echo(f"articles unchanged: reused {run.store.location}", err=True)
    click.echo(json.dumps(run.summary, indent=2) if as_json else evaluation.format_summary(run.summary))
    if run.comparison is not None:
        click.echo(evaluation.format_comparison(run.comparison), err=as_json)
    if report_dir is not None:
        click.echo(f"report: {report_dir / 'report.html'}", err=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=7860, show_default=True, help="Port to listen on.")
@store_option
@click.option(
    "--demo/--no-demo", default=True, show_default=True, help="Ingest the demo corpus into an empty store first."
)
@friendly
def serve(host: str, port: int, store: Path | None, demo: bool) -> None:
    """Serve the browser chat at /, the HTTP API at /api (docs at /docs) and the wiki widget at /widget.js.

    dossier serve --port 7860
    """
    from assistant.api import DEMO_CORPUS
    from assistant.api import serve as run_server

    run_server(_settings(**_store_override(store)), host, port, demo=DEMO_CORPUS if demo else None)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
