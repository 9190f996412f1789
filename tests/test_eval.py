"""Tests for `dossier eval`: question files, each metric on hand-made answers, the report files, --compare,
store reuse, and (with the real Assistant on the demo corpus) the command end to end."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assistant import evaluation as ev
from assistant.cli import cli
from assistant.errors import QuestionFileError
from assistant.evaluation.report import write_report
from assistant.models import Answer, AnswerSentence, Citation, Passage
from assistant.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEMO_ARTICLES = REPO / "examples" / "articles"
DEMO_QUESTIONS = REPO / "examples" / "questions.jsonl"

# The summary.json keys the issue lists (plus n_invalid and config), in order.
SUMMARY_KEYS = [
    "n",
    "n_answerable",
    "n_invalid",
    "hit@1",
    "hit@5",
    "hit@10",
    "mrr@10",
    "ndcg@10",
    "recall@5",
    "hit@5_lenient",
    "mrr@10_lenient",
    "answer_in_top5",
    "answer_contains",
    "answer_exact",
    "answer_f1",
    "citation_precision",
    "abstain_precision",
    "abstain_recall",
    "unsupported_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "config",
]
QUESTION_METRICS = [
    "hit@1",
    "hit@5",
    "hit@10",
    "mrr@10",
    "ndcg@10",
    "recall@5",
    "hit@5_lenient",
    "mrr@10_lenient",
    "answer_in_top5",
    "answer_contains",
    "answer_exact",
    "answer_f1",
    "citation_precision",
    "unsupported_rate",
]
CONFIG_KEYS = {"embedding_model", "chunk_size", "chunk_overlap", "k", "answerer", "version"}


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The cached eval stores live in tmp_path, never in ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- hand-made records -----------------------------------------------------------------------------


def passage(article_id: str, index: int = 0, score: float = 0.5, text: str = "") -> Passage:
    text = text or f"A passage of {article_id}."
    return Passage(
        f"{article_id}#v1#{index}", article_id, text, 0, len(text), title=f"Title of {article_id}", score=score
    )


def citation(article_id: str, text: str, n: int = 1) -> Citation:
    return Citation(n, article_id, "", "", "", "", text, text, 0, len(text), None, 1.0)


def sentence(text: str, unsupported: bool = False) -> AnswerSentence:
    return AnswerSentence(text, (1,), 0.2 if unsupported else 0.9, unsupported)


def answer(
    text: str = "",
    retrieved: list[Passage] | None = None,
    citations: list[Citation] | None = None,
    abstained: bool = False,
    sentences: list[AnswerSentence] | None = None,
    removed: list[AnswerSentence] | None = None,
) -> Answer:
    return Answer(
        "q",
        text,
        citations or [],
        abstained,
        sentences=sentences or [],
        removed=removed or [],
        retrieved=retrieved or [],
    )


def question(
    qid: str, answers: tuple[str, ...] = (), source_ids: tuple[str, ...] = (), related_ids: tuple[str, ...] = ()
) -> ev.EvalQuestion:
    return ev.EvalQuestion(qid, f"Question {qid}?", answers, source_ids, related_ids)


def four_results() -> list[ev.QuestionResult]:
    """q1 right, q2 wrong (gold at rank 2, a removed sentence), q3 unanswerable and abstained, q4 unanswerable but answered."""
    return [
        ev.score_question(
            question("q1", ("87 km",), ("a",)),
            answer(
                "It was 87 km long [1].",
                [passage("a"), passage("x")],
                [citation("a", "The line is 87 km long.")],
                sentences=[sentence("It was 87 km long.")],
            ),
            100.0,
        ),
        ev.score_question(
            question("q2", ("Aurora-3",), ("b",), ("y",)),
            answer(
                "Nothing useful here [1].",
                [passage("y"), passage("b"), passage("b", 1)],
                [citation("y", "Irrelevant.")],
                sentences=[sentence("Nothing useful here.")],
                removed=[sentence("A made-up claim.", unsupported=True)],
            ),
            200.0,
        ),
        ev.score_question(
            question("q3", source_ids=("z",)),
            answer("The articles do not answer this.", [passage("z")], abstained=True),
            300.0,
        ),
        ev.score_question(
            question("q4"),
            answer("Something [1].", [passage("z")], [citation("z", "Something.")], sentences=[sentence("Something.")]),
            400.0,
        ),
    ]


# -- metrics: retrieval ----------------------------------------------------------------------------


def test_ranked_articles_keep_the_best_rank_of_each_article_and_break_ties_by_list_order() -> None:
    tied = [passage("b", score=0.5), passage("a", score=0.5), passage("b", 1, score=0.5), passage("c", score=0.9)]
    assert ev.ranked_articles(tied) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("ranked", "gold", "expected"),
    [
        (["a", "x"], {"a"}, {"hit@1": 1.0, "hit@5": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0, "recall@5": 1.0}),
        (["x", "y", "a"], {"a"}, {"hit@1": 0.0, "hit@5": 1.0, "mrr@10": 1 / 3, "ndcg@10": 0.5, "recall@5": 1.0}),
        (
            ["a", "x", "b"],
            {"a", "b", "c"},
            {
                "hit@1": 1.0,
                "mrr@10": 1.0,
                "recall@5": 2 / 3,
                "ndcg@10": (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4)),
            },
        ),
        ([f"x{i}" for i in range(10)] + ["a"], {"a"}, {"hit@5": 0.0, "hit@10": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0}),
        ([f"x{i}" for i in range(5)] + ["a"], {"a"}, {"hit@5": 0.0, "hit@10": 1.0, "mrr@10": 1 / 6, "recall@5": 0.0}),
        ([], {"a"}, {"hit@1": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0, "recall@5": 0.0}),
        (["a"], set(), {"hit@1": None, "hit@5": None, "mrr@10": None, "ndcg@10": None, "recall@5": None}),
    ],
)
def test_retrieval_metrics_on_known_rankings(
    ranked: list[str], gold: set[str], expected: dict[str, float | None]
) -> None:
    got = {
        "hit@1": ev.hit_at(ranked, gold, 1),
        "hit@5": ev.hit_at(ranked, gold, 5),
        "hit@10": ev.hit_at(ranked, gold, 10),
        "mrr@10": ev.mrr_at(ranked, gold, 10),
        "ndcg@10": ev.ndcg_at(ranked, gold, 10),
        "recall@5": ev.recall_at(ranked, gold, 5),
    }
    for name, value in expected.items():
        assert got[name] == (None if value is None else pytest.approx(value)), name


def test_tied_scores_rank_in_the_order_retrieval_returned() -> None:
    result = ev.score_question(
        question("t", ("x",), ("gold",)), answer("x", [passage("other", score=0.7), passage("gold", score=0.7)]), 1.0
    )
    assert result.metrics["hit@1"] == 0.0
    assert result.metrics["mrr@10"] == 0.5
    assert result.gold_rank == 2


def test_lenient_metrics_also_count_related_articles() -> None:
    result = ev.score_question(
        question("t", ("x",), ("gold",), ("near",)), answer("x", [passage("near"), passage("o1"), passage("gold")]), 1.0
    )
    assert (result.metrics["hit@1"], result.metrics["mrr@10"]) == (0.0, pytest.approx(1 / 3))
    assert (result.metrics["hit@5_lenient"], result.metrics["mrr@10_lenient"]) == (1.0, 1.0)


# -- metrics: answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The  Aurora-3 rocket!", "aurora3 rocket"),
        ("“St. Petersburg” – an answer", "st petersburg answer"),
        ("36,000 and $4.82 billion", "36000 and 482 billion"),
        ("A an THE", ""),
    ],
)
def test_normalize_answer_like_squad(text: str, normal: str) -> None:
    assert ev.normalize_answer(text) == normal


@pytest.mark.parametrize(
    ("text", "answers", "contains", "exact", "f1"),
    [
        ("It cost $4.82 billion [1][2].", ["$4.82 billion"], 1.0, 0.0, 2 / 3),  # "it cost 482 billion" vs "482 billion"
        ("Aurora-3 [1, 2]", ["Aurora-3"], 1.0, 1.0, 1.0),
        ("The Aurora-3.", ["Aurora-3"], 1.0, 1.0, 1.0),
        ("It opened in 2012.", ["12"], 0.0, 0.0, 0.0),
        ("Daniel Kiprono won", ["Amina Tesfaye", "Kiprono"], 1.0, 0.0, 0.5),
        ("Daniel Kiprono won", ["x y", "Daniel Kiprono"], 1.0, 0.0, 0.8),
        ("", ["Kiprono"], 0.0, 0.0, 0.0),
        ("Anything at all", ["The"], 0.0, 0.0, 0.0),
        ("Anything at all", [], None, None, None),
    ],
)
def test_answer_metrics_on_known_cases(
    text: str, answers: list[str], contains: float | None, exact: float | None, f1: float | None
) -> None:
    scored = ev.answer_for_scoring(answer(text))
    assert ev.contains_answer(scored, answers) == contains
    assert ev.exact_match(scored, answers) == exact
    assert ev.token_f1(scored, answers) == (None if f1 is None else pytest.approx(f1))


def test_an_abstention_scores_zero_even_when_its_text_holds_the_answer() -> None:
    result = ev.score_question(
        question("t", ("87 km",), ("a",)),
        answer("Not answered; the closest passage says 87 km.", [passage("a")], abstained=True),
        1.0,
    )
    assert (result.metrics["answer_contains"], result.metrics["answer_f1"]) == (0.0, 0.0)
    assert result.metrics["citation_precision"] is None
    assert not result.right


def test_answer_in_top5_reads_only_the_first_five_passages() -> None:
    filler = [passage(f"f{i}", text="Nothing to see.") for i in range(5)]
    holding = passage("a", text="The new line is 87 km long.")

    def scored(retrieved: list[Passage]) -> ev.Metric:
        return ev.score_question(question("t", ("87 km",)), answer("", retrieved), 1.0).metrics["answer_in_top5"]

    assert scored([*filler[:4], holding]) == 1.0
    assert scored([*filler, holding]) == 0.0
    assert ev.score_question(question("u"), answer("", [holding]), 1.0).metrics["answer_in_top5"] is None


def test_citation_precision_counts_gold_articles_and_passages_holding_an_answer() -> None:
    citations = [
        citation("gold", "No figure here."),
        citation("other", "It was 87 km long."),
        citation("other", "Nothing."),
    ]
    assert ev.citation_precision(citations, {"gold"}, ["87 km"]) == pytest.approx(2 / 3)
    assert ev.citation_precision([], {"gold"}, ["87 km"]) is None


def test_verification_counts_flag_kept_and_removed_sentences_once() -> None:
    flagged = sentence("A claim.", unsupported=True)
    result = answer("x", sentences=[sentence("Fine."), flagged], removed=[flagged, sentence("Gone.", unsupported=True)])
    assert ev.verification_counts(result) == (2, 3)
    assert ev.verification_counts(answer("x")) == (0, 0)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([(True, True), (True, False), (False, True), (False, False)], (0.5, 0.5)),
        ([(True, True), (True, True), (False, False)], (1.0, 1.0)),
        ([(True, False), (False, False)], (None, 0.0)),  # never abstained: precision undefined
        ([(False, True), (False, False)], (0.0, None)),  # no unanswerable question: recall undefined
        ([], (None, None)),
    ],
)
def test_abstain_precision_and_recall(
    outcomes: list[tuple[bool, bool]], expected: tuple[float | None, float | None]
) -> None:
    assert ev.abstain_scores(outcomes) == expected


def test_percentiles_interpolate_between_ranks() -> None:
    assert ev.percentile([40, 10, 30, 20], 50) == 25.0
    assert ev.percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert ev.percentile([7], 95) == 7.0
    assert ev.percentile([], 50) is None


# -- summary ---------------------------------------------------------------------------------------


def test_summary_of_hand_made_results_has_the_known_values() -> None:
    summary = ev.summarize(four_results(), n_invalid=2, config=ev.run_config(Settings(), workers=1))
    assert list(summary) == SUMMARY_KEYS
    assert set(summary["config"]) >= CONFIG_KEYS
    expected = {
        "n": 4,
        "n_answerable": 2,
        "n_invalid": 2,
        "hit@1": 0.5,
        "hit@5": 1.0,
        "hit@10": 1.0,
        "mrr@10": 0.75,
        "recall@5": 1.0,
        "hit@5_lenient": 1.0,
        "mrr@10_lenient": 1.0,
        "answer_contains": 0.5,
        "answer_exact": 0.0,
        "citation_precision": 0.5,
        "abstain_precision": 1.0,
        "abstain_recall": 0.5,
        "unsupported_rate": 0.25,
        "latency_p50_ms": 250.0,
        "latency_p95_ms": 385.0,
    }
    assert {key: summary[key] for key in expected} == expected
    assert summary["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2, abs=1e-4)
    assert summary["answer_f1"] == pytest.approx((2 * 0.4 / 1.4) / 2, abs=1e-4)  # q1: "it was 87 km long" vs "87 km"


def test_summary_without_answerable_questions_leaves_their_metrics_undefined() -> None:
    unanswerable = [r for r in four_results() if not r.answerable]
    summary = ev.summarize(unanswerable)
    assert (summary["n"], summary["n_answerable"]) == (2, 0)
    for name in QUESTION_METRICS[:-1]:
        assert summary[name] is None, name
    assert (summary["abstain_precision"], summary["abstain_recall"]) == (1.0, 0.5)
    assert json.loads(json.dumps(summary))["hit@5"] is None  # null in summary.json


def test_results_say_which_questions_were_right() -> None:
    assert [result.right for result in four_results()] == [True, False, True, False]


# -- question files --------------------------------------------------------------------------------

GOOD = {
    "id": "g1",
    "question": "Which rocket launched Kestrel-1?",
    "answers": ["Aurora-3"],
    "source_ids": ["kestrel-1-launch"],
}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n", encoding="utf-8"
    )
    return path


def test_jsonl_questions_keep_only_the_fields_the_evaluation_uses(tmp_path: Path) -> None:
    file = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                **GOOD,
                "related_ids": ["wire"],
                "asked_on": "2024-03-20",
                "meta": {"answer_index": [1], "hint": "Aurora-3"},
            },
            "",
            {"id": 7, "question": " How much did the Coastal Line cost? ", "answers": [], "extra": True},
        ],
    )
    loaded = ev.load_questions(file)
    assert loaded.invalid == ()
    first, second = loaded.questions
    assert first == ev.EvalQuestion(
        "g1", "Which rocket launched Kestrel-1?", ("Aurora-3",), ("kestrel-1-launch",), ("wire",), "2024-03-20", 1
    )
    assert (second.id, second.question, second.answers, second.line, second.answerable) == (
        "7",
        "How much did the Coastal Line cost?",
        (),
        3,
        False,
    )
    assert not hasattr(first, "meta")


def test_csv_questions_take_pipe_separated_or_json_list_cells(tmp_path: Path) -> None:
    file = tmp_path / "q.csv"
    file.write_text(
        "id,question,answers,source_ids,related_ids,asked_on,meta\n"
        'c1,What did Hamas report?,"36,000|25,000",putin-gaza,,2024-06-07,ignored\n'
        'c2,"A question\nover two lines?","[""12,400 hectares"", ""12,400""]",wire-2024-0729-fire|x,,,\n'
        "c3,What will Keller earn?,,,,,\n",
        encoding="utf-8",
    )
    loaded = ev.load_questions(file)
    assert loaded.invalid == ()
    c1, c2, c3 = loaded.questions
    assert c1.answers == ("36,000", "25,000")
    assert (c2.question, c2.answers, c2.source_ids, c2.line) == (
        "A question\nover two lines?",
        ("12,400 hectares", "12,400"),
        ("wire-2024-0729-fire", "x"),
        3,
    )
    assert (c3.answers, c3.line, c3.answerable) == ((), 5, False)
    assert c1.asked_on == "2024-06-07"


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"id": "b", "question": "Broken?", "answers": [}', "not valid JSON"),
        ('["not", "an", "object"]', "expected a JSON object"),
        ({"question": "No id?", "answers": []}, "missing or empty 'id'"),
        ({"id": "b", "question": "", "answers": []}, "missing or empty 'question'"),
        ({"id": "b", "question": "No answers field?"}, "missing 'answers'"),
        ({"id": "b", "question": "A string?", "answers": "Aurora-3"}, "'answers' must be a list"),
        ({"id": "b", "question": "Blank answer?", "answers": ["  "]}, "'answers' item 1"),
        ({"id": "b", "question": "Bad ids?", "answers": ["x"], "source_ids": "a"}, "'source_ids' must be a list"),
        ({"id": "b", "question": "Bad date?", "answers": ["x"], "asked_on": "June 6"}, "'asked_on'"),
        ({"id": "b", "question": "Bad date?", "answers": ["x"], "asked_on": "2024-02-30"}, "'asked_on'"),
        ({"id": "g1", "question": "Same id again?", "answers": ["x"]}, "already used on line 1"),
    ],
)
def test_a_malformed_line_is_reported_with_its_number_and_excluded(tmp_path: Path, bad_line: Any, reason: str) -> None:
    file = write_jsonl(tmp_path / "q.jsonl", [GOOD, bad_line, {**GOOD, "id": "g3"}])
    loaded = ev.load_questions(file)
    assert [q.id for q in loaded.questions] == ["g1", "g3"]
    (problem,) = loaded.invalid
    assert (problem.line, problem.path) == (2, str(file))
    assert reason in problem.reason
    assert str(problem).startswith(f"{file} line 2: ")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("c2,Too few fields?\n", "expected 3 CSV fields, got 2"),
        ('c2,Bad list?,"[""unclosed""",\n', "expected 3 CSV fields, got 4"),
        ('c2,Bad list?,"[""unclosed"""\n', "starts like a JSON list"),
    ],
)
def test_a_malformed_csv_row_is_reported_and_excluded(tmp_path: Path, row: str, reason: str) -> None:
    file = tmp_path / "q.csv"
    file.write_text("id,question,answers\nc1,Good?,yes\n" + row + "c3,Also good?,\n", encoding="utf-8")
    loaded = ev.load_questions(file)
    assert [q.id for q in loaded.questions] == ["c1", "c3"]
    assert [(p.line, reason in p.reason) for p in loaded.invalid] == [(3, True)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "no such question file"),
        ("questions.txt", "id,question,answers\n", "unknown question file type .txt"),
        ("empty.csv", "", "the CSV file is empty"),
        ("noanswers.csv", "id,question\nq1,Why?\n", "lacks the column(s) answers"),
        ("allbad.jsonl", "{oops\n[]\n", "no valid question: "),
        ("blank.jsonl", "\n\n", "no valid question"),
    ],
)
def test_an_unusable_question_file_raises_one_clear_error(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    file = tmp_path / name
    if content is not None:
        file.write_text(content, encoding="utf-8")
    with pytest.raises(QuestionFileError) as caught:
        ev.load_questions(file)
    assert message in str(caught.value)
    assert str(file) in str(caught.value)


def test_the_cli_turns_a_bad_question_file_into_one_line_and_exit_1(tmp_path: Path) -> None:
    file = tmp_path / "q.jsonl"
    file.write_text("{not json\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", str(file)])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith(f"error: {file}: no valid question: {file} line 1: not valid JSON")


# -- report files and --compare --------------------------------------------------------------------


def hand_made_run(
    folder: Path, results: list[ev.QuestionResult] | None = None, comparison: dict[str, Any] | None = None
) -> ev.EvalRun:
    results = four_results() if results is None else results
    invalid = [ev.InvalidQuestion("q.jsonl", 5, "not valid JSON (Expecting value at column 1)")]
    summary = ev.summarize(results, len(invalid), ev.run_config(Settings()))
    state = ev.StoreState(Settings(), str(folder / "store"), reused=True)
    return ev.EvalRun(summary, results, invalid, state, comparison, folder / "report", "q.jsonl")


def test_the_report_folder_holds_results_summary_and_html(tmp_path: Path) -> None:
    run = hand_made_run(tmp_path)
    write_report(run)
    folder = tmp_path / "report"
    assert sorted(path.name for path in folder.iterdir()) == ["report.html", "results.jsonl", "summary.json"]
    summary = json.loads((folder / "summary.json").read_text())
    assert list(summary) == SUMMARY_KEYS
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["q1", "q2", "q3", "q4"]
    required = {
        "id",
        "question",
        "answers",
        "answer",
        "citations",
        "retrieved",
        "retrieved_articles",
        "abstained",
        "metrics",
        "latency_ms",
        "right",
    }
    assert all(required <= set(row) for row in rows)
    assert list(rows[0]["metrics"]) == QUESTION_METRICS
    assert rows[1]["retrieved"][1] == {
        "rank": 2,
        "article_id": "b",
        "chunk_id": "b#v1#0",
        "score": 0.5,
        "title": "Title of b",
        "text": "A passage of b.",
    }
    assert rows[1]["retrieved_articles"] == ["y", "b"]
    assert rows[0]["citations"][0]["article_id"] == "a"
    assert (rows[2]["abstained"], rows[2]["metrics"]["hit@1"], rows[3]["latency_ms"]) == (True, None, 400.0)
    assert [ev.QuestionResult.from_dict(row) for row in rows] == run.results


def test_compare_lists_metric_changes_and_questions_that_changed(tmp_path: Path) -> None:
    old = four_results()
    new = [
        ev.score_question(
            question("q1", ("87 km",), ("a",)), answer("It was long [1].", [passage("x"), passage("a")]), 150.0
        ),
        ev.score_question(question("q2", ("Aurora-3",), ("b",)), answer("Aurora-3 [1].", [passage("b")]), 150.0),
        old[2],
        ev.score_question(question("q5"), answer("", abstained=True), 150.0),
    ]
    old_summary, new_summary = ev.summarize(old, 0, {"k": 5}), ev.summarize(new, 1, {"k": 8})
    comparison = ev.compare_reports(old_summary, old, new_summary, new, "old-report")
    assert comparison["metrics"]["hit@1"] == {"old": 0.5, "new": 0.5, "diff": 0.0}
    assert comparison["metrics"]["mrr@10"] == {"old": 0.75, "new": 0.75, "diff": 0.0}
    assert comparison["metrics"]["answer_contains"] == {"old": 0.5, "new": 0.5, "diff": 0.0}
    assert comparison["metrics"]["n_invalid"] == {"old": 0, "new": 1, "diff": 1}
    assert comparison["metrics"]["latency_p50_ms"]["diff"] == -100.0
    assert comparison["config"] == {"k": {"old": 5, "new": 8}}
    assert [item["id"] for item in comparison["right_to_wrong"]] == ["q1"]
    assert [item["id"] for item in comparison["wrong_to_right"]] == ["q2"]
    assert (comparison["only_old"], comparison["only_new"]) == (["q4"], ["q5"])
    text = ev.format_comparison(comparison)
    assert "right -> wrong: 1\n  q1: Question q1?" in text
    assert "wrong -> right: 1\n  q2: Question q2?" in text
    assert "config k: 5 -> 8" in text

    run = hand_made_run(tmp_path, new, comparison)
    run.summary = new_summary
    write_report(run)
    assert json.loads((tmp_path / "report" / "compare.json").read_text()) == comparison
    assert ev.load_report(tmp_path / "report")[0] == new_summary


def test_compare_with_a_folder_that_is_no_report_fails_before_the_run(tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "q.jsonl", [GOOD])
    result = CliRunner().invoke(cli, ["eval", str(file), "--compare", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not an eval report: summary.json is missing" in result.stderr


@pytest.mark.browser
def test_the_html_report_shows_summary_plots_and_failures_in_a_browser(tmp_path: Path, browser: Any) -> None:
    results = four_results()
    hostile = ev.score_question(
        ev.EvalQuestion("q<5>", 'What does <script>window.pwned=1</script> & "this" mean?', ("<b>bold</b>",), ("a",)),
        answer("<img src=x onerror=window.pwned=2>", [passage("a", text="<i>passage</i> text")]),
        50.0,
    )
    run = hand_made_run(tmp_path, [*results, hostile])
    run.comparison = ev.compare_reports(run.summary, results, run.summary, run.results, "old <report>")
    write_report(run)

    page = browser.new_page()
    try:
        page.goto((tmp_path / "report" / "report.html").as_uri())
        assert page.title() == "Dossier eval: q.jsonl"
        summary = page.locator("#summary-table")
        assert summary.locator("tr", has_text="hit@5_lenient").locator("td").nth(1).inner_text() == "1.000"
        assert summary.locator("tr", has_text="latency_p50_ms").is_visible()
        for plot in ("metric-bars", "latency-histogram", "hit-rate-by-rank"):
            svg = page.locator(f"#{plot} svg")
            assert svg.is_visible(), plot
            box = svg.bounding_box()
            assert box is not None and box["height"] > 30, plot
        assert page.locator("#metric-bars rect.bar").count() == 16  # every defined fraction metric has a bar
        assert page.locator("#hit-rate-by-rank circle").count() == 20  # strict and lenient, ranks 1..10
        failures = page.locator("#failures-table tr")
        assert failures.count() == 1 + 3  # header + q2, q4 and the hostile one
        q2 = page.locator("#failures-table tr", has_text="Question q2?")
        assert "Aurora-3" in q2.inner_text() and "Nothing useful here" in q2.inner_text()
        assert q2.locator("ol.passages li").count() == 3
        assert page.locator("#failures-table li.gold").count() >= 2
        hostile_row = page.locator("#failures-table tr", has_text="q<5>")
        assert "<script>window.pwned=1</script>" in hostile_row.inner_text()
        assert "<img src=x onerror=window.pwned=2>" in hostile_row.inner_text()
        assert page.evaluate("window.pwned") is None
        assert page.locator("#excluded", has_text="Excluded lines (1)").is_visible()
        assert page.locator("#compare", has_text="old <report>").is_visible()
    finally:
        page.close()


# -- store reuse (real model, real Chroma) ---------------------------------------------------------


def counts(state: ev.StoreState) -> tuple[bool, int, int, int]:
    """(reused, added, updated, unchanged) of a prepared store."""
    done = state.ingest or {}
    return state.reused, done.get("added", 0), done.get("updated", 0), done.get("unchanged", 0)


def test_an_unchanged_given_store_is_reused_and_a_changed_one_updated(tmp_path: Path, settings: Settings) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    for source in DEMO_ARTICLES.glob("*.md"):
        (articles / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    store = tmp_path / "given-store"

    first = ev.prepare_store(settings, [articles], store)
    assert counts(first) == (False, 2, 0, 0)
    second = ev.prepare_store(settings, [articles], store)
    assert second.reused  # not even read: the marker matches the files and the store's generation
    assert second.location == first.location == str(store.resolve())

    (articles / "ecb-rate-cut.md").write_text((articles / "ecb-rate-cut.md").read_text() + "\nA new closing line.\n")
    third = ev.prepare_store(settings, [articles], store)
    assert counts(third) == (False, 0, 1, 1)  # the pipeline re-embedded only the changed article

    from assistant.store import Store

    Store.from_settings(third.settings).remove("port-averly-election")  # the store changed behind the marker's back
    fourth = ev.prepare_store(settings, [articles], store)
    assert counts(fourth) == (False, 1, 0, 1)


def test_the_cached_store_is_keyed_by_the_files_and_the_chunking(
    tmp_path: Path, settings: Settings, isolated_cache: Path
) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    (articles / "ecb-rate-cut.md").write_text(
        (DEMO_ARTICLES / "ecb-rate-cut.md").read_text(encoding="utf-8"), encoding="utf-8"
    )

    first = ev.prepare_store(settings, [articles])
    assert not first.reused
    assert first.location.startswith(str(isolated_cache / "dossier" / "eval-stores"))
    assert ev.prepare_store(settings, [articles]).reused
    other_chunking = ev.prepare_store(settings.with_overrides(chunk_size=400), [articles])
    assert not other_chunking.reused and other_chunking.location != first.location


# -- end to end with the real Assistant on the demo corpus -----------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`dossier eval examples/questions.jsonl --articles examples/articles --report R1`, run once for this module."""
    folder = tmp_path_factory.mktemp("demo-eval")
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("DOSSIER_")}
    env.update(
        XDG_CACHE_HOME=str(folder / "cache"),
        DOSSIER_STORE=str(folder / "unused-store"),
        DOSSIER_CONFIG=str(folder / "no-dossier.toml"),
        HF_HUB_OFFLINE="1",
    )
    result = CliRunner(env=env).invoke(
        cli,
        ["eval", str(DEMO_QUESTIONS), "--articles", str(DEMO_ARTICLES), "--report", str(folder / "r1")],
        catch_exceptions=False,
    )
    yield {"folder": folder, "env": env, "result": result}


def test_eval_on_the_demo_corpus_writes_a_full_report(demo_run: dict[str, Any]) -> None:
    result, folder = demo_run["result"], demo_run["folder"]
    assert result.exit_code == 0, result.output
    assert "ingested into" in result.stderr and "added 10" in result.stderr
    summary = json.loads((folder / "r1" / "summary.json").read_text())
    assert list(summary) == SUMMARY_KEYS
    assert (summary["n"], summary["n_answerable"], summary["n_invalid"]) == (18, 14, 0)
    assert summary["hit@5"] >= 0.8  # the gold article ids match the stored ids (file stems, wire ids)
    assert summary["abstain_recall"] is not None and summary["latency_p50_ms"] > 0
    assert summary["config"]["answerer"] == "extractive" and summary["config"]["k"] == 5
    rows = [json.loads(line) for line in (folder / "r1" / "results.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [f"demo-{i:02d}" for i in range(1, 19)]
    assert all(row["retrieved"] and row["retrieved"][0]["rank"] == 1 for row in rows)
    assert re.search(r"^n\s+18$", result.stdout, re.MULTILINE)
    assert (folder / "r1" / "report.html").read_text().count("<svg") == 3


def test_a_second_run_reuses_the_store_skips_bad_lines_and_compares(
    demo_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.chain import Assistant

    asked: list[tuple[Any, ...]] = []
    real_ask = Assistant.ask

    def spy(self: Assistant, question: str, *args: Any, **kwargs: Any) -> Answer:
        asked.append((question, args, kwargs))
        return real_ask(self, question, *args, **kwargs)

    monkeypatch.setattr(Assistant, "ask", spy)
    demo = [json.loads(line) for line in DEMO_QUESTIONS.read_text().splitlines()]
    questions = write_jsonl(
        tmp_path / "subset.jsonl",
        [
            {**demo[0], "asked_on": "2024-06-07", "meta": {"secret": "MUST-NOT-LEAK"}},
            '{"id": "broken", ',
            demo[16],
            demo[4],  # beyond --limit 2: never asked
        ],
    )
    folder = demo_run["folder"]
    result = CliRunner(env=demo_run["env"]).invoke(
        cli,
        [
            "eval",
            str(questions),
            "--articles",
            str(DEMO_ARTICLES),
            "--report",
            str(tmp_path / "r2"),
            "--compare",
            str(folder / "r1"),
            "--json",
            "--workers",
            "2",
            "--limit",
            "2",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "articles unchanged: reused" in result.stderr  # no ingest, no embedding of articles
    assert f"excluded {questions} line 2: not valid JSON" in result.stderr
    summary = json.loads(result.stdout)
    assert summary == json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert (summary["n"], summary["n_answerable"], summary["n_invalid"]) == (2, 1, 1)
    assert sorted(asked) == sorted(
        [(demo[0]["question"], (), {"as_of": "2024-06-07"}), (demo[16]["question"], (), {"as_of": None})]
    )
    comparison = json.loads((tmp_path / "r2" / "compare.json").read_text())
    assert comparison["metrics"]["n"] == {"old": 18, "new": 2, "diff": -16}
    assert len(comparison["only_old"]) == 16
    assert "compared with" in result.stderr and "right -> wrong" in result.stderr
