"""A run's summary (summary.json), its comparison with an earlier report (compare.json), and both as text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant import __version__
from assistant.errors import DossierError
from assistant.evaluation.metrics import Metric, abstain_scores, mean, percentile
from assistant.evaluation.scoring import ANSWER_METRICS, RETRIEVAL_METRICS, QuestionResult
from assistant.settings import Settings

# Summary keys, in the order of summary.json, the text table and the HTML table.
ABSTAIN_METRICS = ("abstain_precision", "abstain_recall")
FRACTION_METRICS = (*RETRIEVAL_METRICS, *ANSWER_METRICS, *ABSTAIN_METRICS, "unsupported_rate")
COUNT_KEYS = ("n", "n_answerable", "n_invalid")
SUMMARY_KEYS = (*COUNT_KEYS, *FRACTION_METRICS, "latency_p50_ms", "latency_p95_ms", "config")
MAX_RANK = 10


def run_config(settings: Settings, workers: int = 1) -> dict[str, Any]:
    """The configuration that produced a run's numbers (the `config` of summary.json)."""
    return {
        "embedding_model": settings.embedding_model,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "k": settings.k,
        "max_per_article": settings.max_per_article,
        "reranker": settings.reranker,
        "answerer": settings.llm,
        "workers": workers,
        "version": __version__,
    }


def summarize(
    results: Sequence[QuestionResult], n_invalid: int = 0, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """summary.json: counts, each metric averaged, latency percentiles and the configuration.

    Retrieval and answer metrics average over the answerable questions where they are defined (retrieval
    needs `source_ids`, citation precision needs citations); with no answerable question they are None.
    `unsupported_rate` pools the sentences of every answer (flagged / all). Latency covers every question.
    """
    answerable = [result for result in results if result.answerable]
    summary: dict[str, Any] = {"n": len(results), "n_answerable": len(answerable), "n_invalid": n_invalid}
    for name in (*RETRIEVAL_METRICS, *ANSWER_METRICS):
        summary[name] = _round(mean(result.metrics.get(name) for result in answerable))
    precision, recall = abstain_scores((not result.answerable, result.abstained) for result in results)
    summary["abstain_precision"], summary["abstain_recall"] = _round(precision), _round(recall)
    sentences = sum(result.sentences for result in results)
    summary["unsupported_rate"] = _round(sum(result.flagged for result in results) / sentences if sentences else None)
    latencies = [result.latency_ms for result in results]
    summary["latency_p50_ms"] = _round(percentile(latencies, 50), 1)
    summary["latency_p95_ms"] = _round(percentile(latencies, 95), 1)
    summary["config"] = dict(config or {})
    return summary


def hit_rate_by_rank(results: Sequence[QuestionResult], lenient: bool = False, depth: int = MAX_RANK) -> list[Metric]:
    """Share of answerable questions with gold ids whose first gold article is at rank <= r, for r = 1..depth."""
    gold = [r for r in results if r.answerable and (r.source_ids or (lenient and r.related_ids))]
    if not gold:
        return [None] * depth
    ranks = [r.gold_rank_lenient if lenient else r.gold_rank for r in gold]
    return [sum(1 for rank in ranks if rank is not None and rank <= cut) / len(gold) for cut in range(1, depth + 1)]


def _round(value: Metric, digits: int = 4) -> Metric:
    return None if value is None else round(value, digits)


# -- comparing with an earlier report --------------------------------------------------------------


def load_report(directory: str | Path) -> tuple[dict[str, Any], list[QuestionResult]]:
    """The summary and results of an earlier `--report` folder (for `--compare`)."""
    folder = Path(directory)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        lines = (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()
        results = [QuestionResult.from_dict(json.loads(line)) for line in lines if line.strip()]
    except FileNotFoundError as exc:
        raise DossierError(
            f"{folder} is not an eval report: {Path(exc.filename).name} is missing (give the folder of an earlier --report)"
        ) from exc
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise DossierError(f"{folder}: unreadable eval report ({exc})") from exc
    return summary, results


def compare_reports(
    old_summary: dict[str, Any],
    old_results: Sequence[QuestionResult],
    new_summary: dict[str, Any],
    new_results: Sequence[QuestionResult],
    old_label: str = "",
) -> dict[str, Any]:
    """compare.json: per metric old, new and diff (new - old; None when either is None), the changed
    configuration, and the questions (matched by id) that went right -> wrong and wrong -> right."""
    metrics = {}
    for name in SUMMARY_KEYS:
        if name == "config":
            continue
        old, new = old_summary.get(name), new_summary.get(name)
        diff = round(new - old, 4) if isinstance(old, int | float) and isinstance(new, int | float) else None
        metrics[name] = {"old": old, "new": new, "diff": diff}
    old_config, new_config = old_summary.get("config", {}), new_summary.get("config", {})
    config = {
        key: {"old": old_config.get(key), "new": new_config.get(key)}
        for key in dict.fromkeys([*old_config, *new_config])
        if old_config.get(key) != new_config.get(key)
    }
    before = {result.id: result for result in old_results}
    now = {result.id: result for result in new_results}
    both = [result for result in new_results if result.id in before]

    def entry(result: QuestionResult) -> dict[str, Any]:
        return {
            "id": result.id,
            "question": result.question,
            "answers": list(result.answers),
            "old": before[result.id].answer,
            "new": result.answer,
        }

    return {
        "old_report": old_label,
        "metrics": metrics,
        "config": config,
        "right_to_wrong": [entry(r) for r in both if before[r.id].right and not r.right],
        "wrong_to_right": [entry(r) for r in both if not before[r.id].right and r.right],
        "only_old": [result_id for result_id in before if result_id not in now],
        "only_new": [result_id for result_id in now if result_id not in before],
    }


# -- text output -----------------------------------------------------------------------------------


def format_value(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_ms"):
        return f"{value:.1f} ms"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_diff(name: str, diff: Any) -> str:
    if diff is None:
        return "-"
    if isinstance(diff, int):
        return f"{diff:+d}"
    return f"{diff:+.1f}" if name.endswith("_ms") else f"{diff:+.3f}"


def format_summary(summary: dict[str, Any]) -> str:
    """summary.json as an aligned two-column table for the terminal."""
    lines = [f"{name:<20} {format_value(name, summary.get(name))}" for name in SUMMARY_KEYS if name != "config"]
    config = summary.get("config") or {}
    lines.append("config               " + ", ".join(f"{key}={value}" for key, value in config.items()))
    return "\n".join(lines)


def format_comparison(comparison: dict[str, Any]) -> str:
    """compare.json as a table (metric, old, new, diff) and the lists of questions that changed."""
    lines = [
        f"compared with {comparison.get('old_report') or 'the old report'}",
        f"{'metric':<20} {'old':>10} {'new':>10} {'diff':>10}",
    ]
    for name, row in comparison["metrics"].items():
        lines.append(
            f"{name:<20} {format_value(name, row['old']):>10} {format_value(name, row['new']):>10} {format_diff(name, row['diff']):>10}"
        )
    for key, change in comparison["config"].items():
        lines.append(f"config {key}: {change['old']} -> {change['new']}")
    for title, key in (("right -> wrong", "right_to_wrong"), ("wrong -> right", "wrong_to_right")):
        items = comparison[key]
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {item['id']}: {item['question']}" for item in items)
    if comparison["only_old"] or comparison["only_new"]:
        lines.append(
            f"only in the old run: {len(comparison['only_old'])}; only in the new run: {len(comparison['only_new'])}"
        )
    return "\n".join(lines)
