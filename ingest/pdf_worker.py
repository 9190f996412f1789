"""Read a PDF's page texts and metadata in a child process, with a deadline and a memory limit.

PDFs are untrusted: a file of a few kilobytes can make a parser loop for minutes or fill the memory.
`read_pdf` runs pypdf in a fresh Python process (`python -m ingest.pdf_worker FILE MB`: never a fork of
a server full of threads), which limits its own address space (`resource.RLIMIT_AS`) before it opens
the file and prints what it read as one JSON object; the parent kills it when the deadline passes. The
parent never runs pypdf itself, so a stalled parse costs one child process, not the interpreter lock
the server's question threads share.

A plain subprocess rather than multiprocessing's forkserver: Python 3.11's forkserver ignores the
parent's `sys.path` and its children import the parent's main script (the whole server), while
`-m` with `PYTHONPATH` set to this package's folder runs exactly this code, for about 0.2 s a file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Seconds a child may take to read one PDF (Settings.pdf_timeout_s): ordinary news PDFs take well under one.
PDF_TIMEOUT_S = 30.0
# Address space a child may use, in MiB (Settings.pdf_max_memory_mb): Python with pypdf starts at about 100.
PDF_MAX_MEMORY_MB = 1024
# The folder holding the `ingest` package: the child imports this very module from there.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class PdfReadError(Exception):
    """A PDF that could not be read within the limits, or at all; the message says why and which setting applies."""


@dataclass(frozen=True)
class PdfLimits:
    """How long and how much memory reading one PDF may take (`pdf_timeout_s`, `pdf_max_memory_mb`)."""

    timeout_s: float = PDF_TIMEOUT_S
    max_memory_mb: int = PDF_MAX_MEMORY_MB


@dataclass(frozen=True)
class PdfText:
    """What the child read: each page's text, and the document's title, author and raw creation date ("" if none)."""

    pages: list[str]
    title: str = ""
    author: str = ""
    created: str = ""


def read_pdf(path: str, limits: PdfLimits = PdfLimits()) -> PdfText:  # noqa: B008 (a frozen value)
    """Read `path` in a child process within `limits`; raises `PdfReadError` saying what went wrong.

    >>> read_pdf("brief.pdf").pages[0][:20]                              # doctest: +SKIP
    'Harbour bridge opens'
    >>> read_pdf("crafted.pdf", PdfLimits(timeout_s=0.5))                # doctest: +SKIP
    PdfReadError: reading the PDF took longer than 0.5 s (pdf_timeout_s) ...
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-P", "-m", "ingest.pdf_worker", str(Path(path).resolve()), str(limits.max_memory_mb)]
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as child:
        try:
            out, err = child.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            log.warning("%s: PDF reading stopped after %g s (pdf_timeout_s)", path, limits.timeout_s)
            raise PdfReadError(
                f"reading the PDF took longer than {limits.timeout_s:g} s (pdf_timeout_s): the file may be made to "
                "stall PDF readers; it was skipped (raise pdf_timeout_s if it is a genuine, very large PDF)"
            ) from None
    try:
        kind, value = json.loads(out.decode("utf-8").strip().rsplit("\n", 1)[-1])
    except (ValueError, UnicodeDecodeError):  # it died before it could answer
        log.warning("%s: PDF reader exited with %s: %s", path, child.returncode, err.decode(errors="replace")[-500:])
        raise PdfReadError(_died(child.returncode, limits)) from None
    if kind == "memory":
        log.warning("%s: PDF reading needed over %d MB (pdf_max_memory_mb)", path, limits.max_memory_mb)
        raise PdfReadError(_out_of_memory(limits))
    if kind == "error":
        raise PdfReadError(str(value))
    return PdfText(**value)


def _out_of_memory(limits: PdfLimits) -> str:
    return (
        f"reading the PDF needed more than {limits.max_memory_mb} MB of memory (pdf_max_memory_mb): "
        "it was skipped (raise pdf_max_memory_mb if it is a genuine, very large PDF)"
    )


def _died(exitcode: int | None, limits: PdfLimits) -> str:
    # A child that dies without a word most often hit the memory limit where Python could not catch it.
    return f"the PDF reader stopped unexpectedly (exit code {exitcode}); {_out_of_memory(limits)}"


def _child(path: str, max_memory_mb: int) -> tuple[str, Any]:
    """In the child: limit memory, read the PDF; ("ok", fields), ("error", message) or ("memory", "")."""
    try:
        import resource

        limit = max_memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # no resource module (Windows), or a limit the system refuses
        pass
    try:
        return "ok", asdict(_extract(path))
    except MemoryError:
        return "memory", ""
    except PdfReadError as exc:
        return "error", str(exc)
    except Exception as exc:  # pypdf raises many error types for damaged files
        return "error", f"cannot parse PDF: {exc}"


def _extract(path: str) -> PdfText:
    from pypdf import PdfReader

    # pypdf logs its repairs ("EOF marker not found") without naming the file; a failure is reported instead.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = PdfReader(path)
    if reader.is_encrypted:
        raise PdfReadError("PDF is encrypted; decrypt it first")
    pages = [page.extract_text() or "" for page in reader.pages]
    meta = reader.metadata
    created = meta.get("/CreationDate") if meta else None
    return PdfText(
        pages=pages,
        title=str(meta.title) if meta and meta.title else "",
        author=str(meta.author) if meta and meta.author else "",
        created=str(created) if created else "",
    )


if __name__ == "__main__":
    answer = _child(sys.argv[1], int(sys.argv[2]))
    try:
        text = json.dumps(answer)
    except MemoryError:
        text = json.dumps(["memory", ""])
    sys.stdout.write("\n" + text + "\n")
