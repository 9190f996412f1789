"""The files of an eval report: results.jsonl, summary.json, compare.json and a self-contained report.html."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant.errors import DossierError
from assistant.evaluation.run import EvalRun
from assistant.evaluation.scoring import QuestionResult
from assistant.evaluation.summary import (
    COUNT_KEYS,
    FRACTION_METRICS,
    MAX_RANK,
    SUMMARY_KEYS,
    format_diff,
    format_value,
    hit_rate_by_rank,
)


def write_report(run: EvalRun, folder: str | Path | None = None) -> None:
    """Write results.jsonl, summary.json, report.html (and compare.json after a comparison) to `folder`
    (by default `run.report_dir`)."""
    if folder is None:
        if run.report_dir is None:
            raise ValueError("no folder given and run.report_dir is not set")
        folder = run.report_dir
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "results.jsonl").open("w", encoding="utf-8") as out:
            for result in run.results:
                out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        (folder / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n", encoding="utf-8")
        if run.comparison is not None:
            (folder / "compare.json").write_text(
                json.dumps(run.comparison, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        (folder / "report.html").write_text(render_html(run), encoding="utf-8")
    except OSError as exc:
        raise DossierError(f"cannot write the report to {folder}: {exc.strerror or exc}") from exc


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1d232a}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #dde;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#6b7480}
.plots{display:flex;flex-wrap:wrap;gap:1.5rem}.plot{border:1px solid #dde;padding:.5rem}.plot h3{margin:.2rem 0 .5rem;font-size:1rem}
.up{color:#1a7f37}.down{color:#c62828}.gold{background:#fff4c2}ol.passages{margin:0;padding-left:1.4rem}details summary{cursor:pointer}
.passage{white-space:pre-wrap;font-size:12px;color:#333}figure{margin:0}
#failures-table td:nth-child(4){width:28%}#failures-table td:nth-child(5){width:36%}.config code{background:#f3f5f8;padding:0 .2rem}
"""


def render_html(run: EvalRun) -> str:
    """report.html: a self-contained page (inline CSS and SVG, no scripts) with the summary, the plots,
    the comparison, the excluded lines and the failures. Every piece of data is HTML-escaped."""
    summary, results = run.summary, run.results
    title = f"Dossier eval: {Path(run.questions_path).name or 'questions'}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(run.questions_path)} &middot; store {_e(run.store.location)} &middot; {_e(run.started_at)}</p>',
        _summary_section(summary, run.comparison),
        '<h2 id="plots">Plots</h2><div class="plots">',
        _plot("Metrics", _svg_metric_bars(summary), "metric-bars"),
        _plot("Latency per question", _svg_histogram([r.latency_ms for r in results]), "latency-histogram"),
        _plot("Hit rate by rank (first gold article at rank &le; r)", _svg_rank_curve(results), "hit-rate-by-rank"),
        "</div>",
    ]
    if run.comparison is not None:
        parts.append(_comparison_section(run.comparison))
    if run.invalid:
        items = "".join(f"<li>line {item.line}: {_e(item.reason)}</li>" for item in run.invalid)
        parts.append(f'<h2 id="excluded">Excluded lines ({len(run.invalid)})</h2><ul>{items}</ul>')
    parts.append(_failures_section(results))
    parts.append("</body></html>")
    return "\n".join(parts)


def _summary_section(summary: dict[str, Any], comparison: dict[str, Any] | None) -> str:
    head = "<tr><th>metric</th><th>value</th>" + ("<th>old</th><th>diff</th>" if comparison else "") + "</tr>"
    rows = []
    for name in SUMMARY_KEYS:
        if name == "config":
            continue
        cells = f'<td>{_e(name)}</td><td class="num">{_e(format_value(name, summary.get(name)))}</td>'
        if comparison:
            row = comparison["metrics"].get(name, {})
            cells += f'<td class="num">{_e(format_value(name, row.get("old")))}</td>{_diff_cell(name, row.get("diff"))}'
        rows.append(f"<tr>{cells}</tr>")
    config = "".join(
        f"<li>{_e(key)}: <code>{_e(value)}</code></li>" for key, value in (summary.get("config") or {}).items()
    )
    return (
        f'<h2 id="summary">Summary</h2><table id="summary-table">{head}{"".join(rows)}</table>'
        f'<p class="muted">Fractions from 0 to 1; "-" where a metric is undefined (e.g. no answerable question).</p>'
        f'<ul class="config">{config}</ul>'
    )


def _diff_cell(name: str, diff: Any) -> str:
    if diff is None:
        return '<td class="num">-</td>'
    better = diff < 0 if name.endswith("_ms") or name == "unsupported_rate" else diff > 0
    css = "num" if diff == 0 or name in COUNT_KEYS else ("num up" if better else "num down")
    return f'<td class="{css}">{_e(format_diff(name, diff))}</td>'


def _comparison_section(comparison: dict[str, Any]) -> str:
    parts = [f'<h2 id="compare">Compared with {_e(comparison.get("old_report") or "the old report")}</h2>']
    for key, change in comparison["config"].items():
        parts.append(
            f"<p>config {_e(key)}: <code>{_e(change['old'])}</code> &rarr; <code>{_e(change['new'])}</code></p>"
        )
    for label, key in (("Right &rarr; wrong", "right_to_wrong"), ("Wrong &rarr; right", "wrong_to_right")):
        items = comparison[key]
        rows = (
            "".join(
                f"<tr><td>{_e(i['id'])}</td><td>{_e(i['question'])}</td><td>{_e(' | '.join(i['answers']) or '(unanswerable)')}</td>"
                f"<td>{_e(i['old'])}</td><td>{_e(i['new'])}</td></tr>"
                for i in items
            )
            or '<tr><td colspan="5">None.</td></tr>'
        )
        parts.append(
            f'<h3>{label} ({len(items)})</h3><table id="{key.replace("_", "-")}">'
            f"<tr><th>id</th><th>question</th><th>expected</th><th>old answer</th><th>new answer</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _failures_section(results: Sequence[QuestionResult]) -> str:
    failures = [result for result in results if not result.right]
    rows = []
    for result in failures:
        gold = set(result.source_ids) | set(result.related_ids)
        expected = " | ".join(result.answers) if result.answers else "(not answerable: should abstain)"
        got = ("(abstained) " if result.abstained else "") + result.answer
        where = f"gold {', '.join(result.source_ids) or '-'}; first gold rank {result.gold_rank or '-'}"
        passages = "".join(
            f"<li{' class=gold' if passage['article_id'] in gold else ''}><details><summary>{_e(passage['article_id'])} "
            f'<span class="muted">({float(passage.get("score") or 0):.3f})</span> {_e(passage.get("title") or "")}</summary>'
            f'<div class="passage">{_e(passage.get("text") or "")}</div></details></li>'
            for passage in result.retrieved
        )
        rows.append(
            f"<tr><td>{_e(result.id)}</td><td>{_e(result.question)}</td><td>{_e(expected)}</td><td>{_e(got)}</td>"
            f'<td><div class="muted">{_e(where)}</div><ol class="passages">{passages}</ol></td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="5">No failures.</td></tr>'
    return (
        f'<h2 id="failures">Failures ({len(failures)} of {len(results)})</h2>'
        '<p class="muted">Wrong: an answerable question whose answer does not contain an expected answer, or an '
        "unanswerable one that was answered. Passages from gold or related articles are highlighted.</p>"
        '<table id="failures-table"><tr><th>id</th><th>question</th><th>expected</th><th>got</th>'
        f"<th>passages it saw (rank order)</th></tr>{body}</table>"
    )


# -- inline SVG plots ------------------------------------------------------------------------------


def _plot(title: str, svg: str, plot_id: str) -> str:
    return f'<figure class="plot" id="{plot_id}"><h3>{title}</h3>{svg}</figure>'


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(label)}" font-family="system-ui,sans-serif" font-size="11">{body}</svg>'
    )


def _svg_metric_bars(summary: dict[str, Any]) -> str:
    """Horizontal bars from 0 to 1, one per fraction metric; undefined metrics get a dash instead of a bar."""
    names = FRACTION_METRICS
    left, bar_width, row = 130, 260, 18
    height = row * len(names) + 24
    body = [f'<line x1="{left}" y1="4" x2="{left}" y2="{height - 18}" stroke="#999"/>']
    for tick in (0, 0.5, 1):
        x = left + tick * bar_width
        body.append(f'<text x="{x}" y="{height - 5}" text-anchor="middle" fill="#666">{tick:g}</text>')
    for index, name in enumerate(names):
        y = 4 + index * row
        value = summary.get(name)
        body.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{_e(name)}</text>')
        if value is None:
            body.append(f'<text x="{left + 4}" y="{y + 12}" fill="#999">-</text>')
            continue
        width = max(0.0, min(1.0, float(value))) * bar_width
        color = "#c62828" if name == "unsupported_rate" else "#3b6fb6"
        body.append(
            f'<rect class="bar" x="{left}" y="{y + 2}" width="{width:.1f}" height="{row - 5}" fill="{color}">'
            f"<title>{_e(name)}: {value:.3f}</title></rect>"
        )
        body.append(f'<text x="{left + width + 4:.1f}" y="{y + 12}">{value:.3f}</text>')
    return _svg(left + bar_width + 50, height, "".join(body), "metric bars")


def _svg_histogram(latencies: Sequence[float]) -> str:
    """Questions per latency bin (up to 20 equal bins between the fastest and the slowest question)."""
    width, height, left, bottom = 420, 220, 40, 30
    if not latencies:
        return _svg(width, 40, '<text x="10" y="24">no questions</text>', "latency histogram")
    low, high = min(latencies), max(latencies)
    bins = max(1, min(20, math.ceil(math.sqrt(len(latencies)))))
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in latencies:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    plot_w, plot_h = width - left - 10, height - bottom - 10
    top = max(counts)
    body = [
        f'<line x1="{left}" y1="10" x2="{left}" y2="{10 + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" y2="{10 + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="18" text-anchor="end" fill="#666">{top}</text>',
        f'<text x="{left}" y="{height - 12}" fill="#666">{low:.0f} ms</text>',
        f'<text x="{left + plot_w}" y="{height - 12}" text-anchor="end" fill="#666">{high:.0f} ms</text>',
    ]
    step = plot_w / bins
    for index, count in enumerate(counts):
        bar_h = plot_h * count / top
        start = low + span * index / bins
        body.append(
            f'<rect class="bar" x="{left + index * step + 1:.1f}" y="{10 + plot_h - bar_h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{bar_h:.1f}" fill="#6a8f3b"><title>{start:.0f}-{start + span / bins:.0f} ms: {count}</title></rect>'
        )
    return _svg(width, height, "".join(body), "latency histogram")


def _svg_rank_curve(results: Sequence[QuestionResult]) -> str:
    """Hit rate at rank 1..10, strict (source_ids) and lenient (source_ids + related_ids), as two lines."""
    width, height, left, bottom = 420, 220, 40, 30
    strict, lenient = hit_rate_by_rank(results), hit_rate_by_rank(results, lenient=True)
    if strict[0] is None and lenient[0] is None:
        return _svg(width, 40, '<text x="10" y="24">no answerable question with gold ids</text>', "hit rate by rank")
    plot_w, plot_h = width - left - 10, height - bottom - 10

    def point(index: int, value: float) -> tuple[float, float]:
        return left + plot_w * index / (MAX_RANK - 1), 10 + plot_h * (1 - value)

    body = [
        f'<line x1="{left}" y1="10" x2="{left}" y2="{10 + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" y2="{10 + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="14" text-anchor="end" fill="#666">1</text>',
        f'<text x="{left - 4}" y="{10 + plot_h}" text-anchor="end" fill="#666">0</text>',
    ]
    for rank in range(1, MAX_RANK + 1):
        x, _ = point(rank - 1, 0)
        body.append(f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle" fill="#666">{rank}</text>')
    for values, color, label, legend_y in (
        (lenient, "#e08a1e", "lenient", plot_h - 6),
        (strict, "#3b6fb6", "strict", plot_h - 22),
    ):
        if values[0] is None:
            continue
        points = [point(index, value or 0.0) for index, value in enumerate(values)]
        body.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>'
        )
        for rank, ((x, y), value) in enumerate(zip(points, values, strict=True), start=1):
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{label} hit@{rank}: {value:.3f}</title></circle>'
            )
        body.append(f'<text x="{left + plot_w - 4}" y="{legend_y}" text-anchor="end" fill="{color}">{label}</text>')
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" text-anchor="middle" fill="#666">rank</text>')
    return _svg(width, height, "".join(body), "hit rate by rank")
