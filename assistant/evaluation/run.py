"""Running a question set: ask each question through the `Assistant`, score it, summarize, return the `EvalRun`.

The caller writes the report (`assistant.evaluation.report.write_report`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from assistant.chain import Assistant
from assistant.errors import BadQuestionError
from assistant.evaluation.cache import StoreState, prepare_store
from assistant.evaluation.questions import EvalQuestion, InvalidQuestion, load_questions
from assistant.evaluation.scoring import QuestionResult, score_question
from assistant.evaluation.summary import compare_reports, load_report, run_config, summarize
from assistant.models import Answer
from assistant.settings import Settings
from assistant.timing import ms_since


def evaluate(
    questions: Sequence[EvalQuestion],
    ask: Callable[[EvalQuestion], Answer],
    workers: int = 1,
    progress: bool = False,
) -> tuple[list[QuestionResult], list[InvalidQuestion]]:
    """Ask every question (`workers` at a time) and score the answers; results keep the questions' order.

    A question the assistant refuses (`BadQuestionError`: too long, for instance) is excluded and
    returned as invalid; any other error stops the run (it would hit every question), with the
    question's id added to the error. Latency is the wall time of each `ask` call, so with more than
    one worker it includes waiting for shared resources (the embedding model runs one batch at a time).
    Two workers measured about twice as fast as one on the demo set here (2 cores): retrieval and
    scoring of one question overlap the other's embedding; more only queue at the model.
    """

    def one(question: EvalQuestion) -> QuestionResult | InvalidQuestion:
        started = time.perf_counter()
        try:
            answer = ask(question)
        except BadQuestionError as exc:
            return InvalidQuestion("", question.line, f"the assistant refused it: {exc}", question.id)
        except Exception as exc:
            exc.add_note(f"while asking question {question.id!r} (line {question.line})")
            raise
        return score_question(question, answer, ms_since(started))

    outcomes: list[QuestionResult | InvalidQuestion | None] = [None] * len(questions)
    # Even one worker asks from a pool thread: measured here, asking from the main thread cost about
    # twice the CPU time for the same answers (torch's intra-op threads work for the main thread only).
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="dossier-eval")
    bar = tqdm(total=len(questions), desc="questions", unit="q", disable=not progress, leave=False, file=sys.stderr)
    try:
        futures = {pool.submit(one, question): index for index, question in enumerate(questions)}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    results = [outcome for outcome in outcomes if isinstance(outcome, QuestionResult)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, InvalidQuestion)]
    return results, refused


@dataclass
class EvalRun:
    """Everything one `run_eval` produced; `report_dir` is where `write_report` puts it when the caller gives none."""

    summary: dict[str, Any]
    results: list[QuestionResult]
    invalid: list[InvalidQuestion]
    store: StoreState
    comparison: dict[str, Any] | None = None
    report_dir: Path | None = None
    questions_path: str = ""
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def run_eval(
    questions: str | Path,
    settings: Settings,
    *,
    articles: Sequence[str | Path] = (),
    store: Path | None = None,
    compare: Path | None = None,
    workers: int = 2,
    limit: int | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
    assistant: Any = None,
) -> EvalRun:
    """Evaluate Dossier on a question file: the whole of `dossier eval`.

    Checks the question file (and the `compare` report) first, prepares the store (`prepare_store`),
    asks the first `limit` questions through `Assistant.from_settings` (or the given `assistant`),
    summarizes and compares. Only each question's text and `asked_on` reach the assistant. Writing the
    report is the caller's: `write_report(run, folder)`.

    >>> run = run_eval("examples/questions.jsonl", Settings(), articles=["examples/articles"])   # doctest: +SKIP
    >>> run.summary["n"], run.store.reused                                                        # doctest: +SKIP
    (18, False)
    >>> write_report(run, Path("eval-report"))                                                    # doctest: +SKIP
    """
    question_set = load_questions(questions)
    old = load_report(compare) if compare is not None else None
    chosen = question_set.questions[:limit] if limit else question_set.questions
    state = prepare_store(settings, articles, store, progress=progress, cache_dir=cache_dir)
    if assistant is None:
        assistant = Assistant.from_settings(state.settings)

    def ask(question: EvalQuestion) -> Answer:
        answer: Answer = assistant.ask(question.question, as_of=question.asked_on or None)
        return answer

    results, refused = evaluate(chosen, ask, workers=workers, progress=progress)
    invalid = [
        *question_set.invalid,
        *(InvalidQuestion(question_set.path, item.line, item.reason, item.id) for item in refused),
    ]
    summary = summarize(results, len(invalid), run_config(state.settings, workers))
    comparison = compare_reports(old[0], old[1], summary, results, str(compare)) if old is not None else None
    return EvalRun(summary, results, invalid, state, comparison, questions_path=question_set.path)
