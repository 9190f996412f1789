"""The `dossier` command line: ingest and manage articles, ask questions, chat, evaluate and serve."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from assistant.errors import DossierError
from assistant.settings import Settings


def _settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings().with_overrides(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in exc.errors())
        raise DossierError(f"invalid settings ({problems}): check DOSSIER_* variables and dossier.toml") from exc


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Dossier's errors into one clear line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DossierError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


store_option = click.option(
    "--store", "store", type=click.Path(file_okay=False, path_type=Path), default=None,
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
    from assistant.store import Store
    from ingest.pipeline import ingest_paths

    settings = _settings(store=store)
    report = ingest_paths(
        paths,
        Store.from_settings(settings),
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        max_bytes=int(settings.max_file_mb * 1024 * 1024),
        progress=not quiet and not as_json and sys.stderr.isatty(),
    )
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        for item in report.skipped:
            click.echo(f"skipped {item.path}: {item.reason}", err=True)
        for path, note in report.notes:
            click.echo(f"note {path}: {note}", err=True)
        for path, owner in report.duplicates:
            click.echo(f"duplicate {path}: same text as stored article {owner}", err=True)
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
    from assistant.store import Store

    records = Store.from_settings(_settings(store=store)).list_articles()
    if as_json:
        click.echo(json.dumps([record.to_dict() for record in records], indent=2))
        return
    if not records:
        click.echo("no articles yet: run dossier ingest PATH")
    for record in records:
        click.echo(f"{record.id}\t{record.published or '-'}\t{record.source or '-'}\t{record.chunks}\t{record.title}")


@cli.command()
@click.argument("article_id")
@click.option("--raw", is_flag=True, help="Also show what cleaning removed and the captions kept apart.")
@store_option
@json_option
@friendly
def show(article_id: str, raw: bool, store: Path | None, as_json: bool) -> None:
    """Show one article's cleaned text and metadata."""
    from assistant.store import Store

    record = Store.from_settings(_settings(store=store)).get_article(article_id)
    if as_json:
        click.echo(json.dumps(record.to_dict(with_text=True), indent=2))
        return
    for key in ("id", "title", "source", "published", "author", "url", "path", "chunks", "ingested_at"):
        click.echo(f"{key}: {getattr(record, key)}")
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
            click.echo(f"note: {note}")


@cli.command()
@click.argument("article_id")
@store_option
@friendly
def remove(article_id: str, store: Path | None) -> None:
    """Remove an article and all its chunks."""
    from assistant.store import Store

    count = Store.from_settings(_settings(store=store)).remove(article_id)
    click.echo(f"removed {article_id} ({count} chunks)")


@cli.command()
@store_option
@json_option
@friendly
def stats(store: Path | None, as_json: bool) -> None:
    """Counts of articles, chunks and sources in the store."""
    from assistant.store import Store

    settings = _settings(store=store)
    the_store = Store.from_settings(settings)
    records = the_store.list_articles()
    dates = sorted(record.published for record in records if record.published)
    data = {
        "store": the_store.location,
        "articles": len(records),
        "chunks": the_store.chunk_count(),
        "sources": the_store.sources(),
        "earliest": dates[0] if dates else "",
        "latest": dates[-1] if dates else "",
        "embedding_model": settings.embedding_model,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            click.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
