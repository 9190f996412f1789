"""The extractive reader: question analysis, rarity, the fitted scoring model, and answers in readers' words."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.answer import ExtractiveAnswerer
from assistant.chain import Assistant
from assistant.embeddings import Embedder
from assistant.errors import ConfigError
from assistant.evaluation import run_eval
from assistant.models import Passage
from assistant.question import analyse
from assistant.rarity import Rarity, WordList
from assistant.reader import SentenceFeatures, load_model
from assistant.settings import Settings
from assistant.text import match_stem
from tests.conftest import clean_settings

HAMAS = "What figures did Hamas report?"
NATURAL = Path(__file__).resolve().parents[1] / "examples" / "questions-natural.jsonl"

# -- question analysis and rarity ------------------------------------------------------------------


def test_a_question_is_analysed_once_into_type_terms_names_and_time() -> None:
    from datetime import date

    question = analyse("How many homes did the Calder Ridge fire destroy this week?", Rarity(), date(2024, 7, 30))

    assert question.answer_type == "number"
    assert {"calder", "ridge"} <= question.names
    assert question.subject == {match_stem("calder"), match_stem("ridge")}  # the names it gives
    assert question.window is not None and question.window.phrase == "this week"
    assert [t.weight for t in question.terms] == sorted((t.weight for t in question.terms), reverse=True)


@pytest.mark.parametrize("word", ["the", "report", "hamas", "qzxv", "evacuation"])
def test_the_kept_word_list_answers_as_wordfreq_does(tmp_path: Path, word: str) -> None:
    import wordfreq

    built = WordList(tmp_path).lookup(word)
    [kept] = tmp_path.iterdir()

    assert built == wordfreq.word_frequency(word, "en")
    assert WordList(tmp_path).lookup(word) == built  # read from the kept table
    assert list(tmp_path.iterdir()) == [kept]


def test_a_damaged_word_list_is_dropped_and_wordfreq_answers_meanwhile(tmp_path: Path) -> None:
    import wordfreq

    path = WordList(tmp_path).path
    WordList(tmp_path).lookup("the")
    path.write_bytes(b"not a table " * 100)

    assert WordList(tmp_path).lookup("report") is None  # word_frequency then asks wordfreq itself
    assert not path.exists()
    assert WordList(tmp_path).lookup("report") == wordfreq.word_frequency("report", "en")


def test_rarity_without_a_store_knows_which_words_matter() -> None:
    rarity = Rarity()
    assert rarity("hamas", "hama") > rarity("figures", "figur") > rarity("report", "report")


class _Index:
    """A lexical index of a given size where every word has the same idf."""

    def __init__(self, size: int) -> None:
        self.size = size

    def idf(self, stem: str) -> float:
        return 1.0


def test_rarity_leans_on_the_store_only_as_it_grows() -> None:
    small, large = Rarity(_Index(10)), Rarity(_Index(200_000))
    general = Rarity()

    assert small("hamas", "hama") == pytest.approx(general("hamas", "hama"), rel=0.01)
    assert large("hamas", "hama") == pytest.approx(1.0, abs=0.1)  # the store's flat idf dominates


# -- the scoring model -------------------------------------------------------------------------------


def _features(**changes: float) -> SentenceFeatures:
    middle = dict.fromkeys(SentenceFeatures.field_names(), 0.5)
    return SentenceFeatures(**(middle | changes))


COVERAGE = ["coverage", "context_coverage", "passage_coverage", "subject_coverage", "relation_coverage"]
MISSING = ["subject_missing", "heaviest_missing", "numbers_missing"]


@pytest.mark.parametrize("name", COVERAGE)
def test_more_coverage_of_the_question_never_lowers_the_probability(name: str) -> None:
    model = load_model()
    probabilities = [model.probability(_features(**{name: value})) for value in (0.0, 0.25, 0.5, 0.75, 1.0)]

    assert probabilities == sorted(probabilities)


@pytest.mark.parametrize("name", MISSING)
def test_more_of_the_question_missing_never_raises_the_probability(name: str) -> None:
    model = load_model()
    probabilities = [model.probability(_features(**{name: value})) for value in (0.0, 0.5, 1.0)]

    assert probabilities == sorted(probabilities, reverse=True)


def test_a_sentence_missing_the_question_s_subject_scores_lower(embedder: Embedder) -> None:
    # Team-written: the same sentence shape, about the subject the question asks after or about another.
    question = "How much did the Tarnow bridge cost?"
    about = "The Tarnow bridge cost 212 million crowns, the city said on Tuesday."
    other = "The Velden bridge cost 212 million crowns, the city said on Tuesday."
    answerer = ExtractiveAnswerer(embed=embedder.encode_cached)

    def best(text: str) -> float:
        return answerer.rank_sentences(question, [Passage("b#v#0", "b", text, 0, len(text))])[0].probability

    assert best(other) < best(about)


def test_an_acronym_in_the_question_is_matched_where_the_passage_spells_it_out() -> None:
    # Team-written: the question writes the acronym, the passage the name; a made-up third body does neither.
    answerer = ExtractiveAnswerer()  # no embedder: coverage alone, so the match is the words'
    question = analyse("What did the OMFA decide on Thursday?", answerer.rarity)
    text = (
        "On Thursday the Ostland Maritime Fisheries Authority chose to decide on closing the northern grounds. "
        "On Thursday the Velden Harbour Board chose to decide on extending the quay."
    )
    passage = Passage("f#v#0", "f", text, 0, len(text))

    spelled, other = sorted(answerer.rank_sentences(question, [passage]), key=lambda c: c.start)

    assert spelled.features is not None and other.features is not None
    assert spelled.features.coverage == 1.0
    assert other.features.coverage < 1.0
    assert spelled.probability > other.probability


def test_a_numbered_name_is_one_term_its_sibling_does_not_match() -> None:
    question = analyse("When did the Merlin-4 probe reach orbit?", Rarity())
    assert "merlin-4" in question.weights and "merlin" not in question.weights and "4" not in question.numbers
    answerer = ExtractiveAnswerer()
    text = "The Merlin-4 probe reached orbit on 3 May. The Merlin-5 probe will reach orbit in 2027."
    passage = Passage("m#v#0", "m", text, 0, len(text))

    own, sibling = sorted(answerer.rank_sentences(question, [passage]), key=lambda c: c.start)

    assert own.features is not None and sibling.features is not None
    assert own.features.coverage > sibling.features.coverage
    assert own.probability > sibling.probability


def test_only_the_shortlist_is_encoded_and_it_keeps_the_sentence_that_answers(embedder: Embedder) -> None:
    # Team-written: eight sentences of a made-up report, one of which answers.
    sentences = [
        "The Harwick council met on Monday evening in the old town hall.",
        "Residents filled the public gallery for the first time this year.",
        "The new Harwick footbridge will cost 18 million crowns, the council said.",
        "Work on the riverside path is expected to start in the spring.",
        "The mayor thanked the volunteers who cleaned the harbour in May.",
        "A vote on the parking plan was postponed until next month.",
        "Two councillors asked for a review of the bus timetable.",
        "The meeting closed shortly after nine o'clock.",
    ]
    text = " ".join(sentences)
    passage = Passage("h#v#0", "h", text, 0, len(text), title="Harwick council meeting")
    encoded: list[str] = []

    def embed(texts: list[str]) -> object:
        encoded.extend(texts)
        return embedder.encode_cached(texts)

    question = "How much will the Harwick footbridge cost?"
    ranked = ExtractiveAnswerer(embed=embed, shortlist=3).rank_sentences(question, [passage])

    assert len(ranked) == 3
    assert len([t for t in encoded if t in sentences]) == 3
    assert "18 million" in ranked[0].text
    everything = ExtractiveAnswerer(embed=embedder.encode_cached, shortlist=None).rank_sentences(question, [passage])
    assert len(everything) == len(sentences)
    assert everything[0].text == ranked[0].text


def test_the_weights_file_says_where_its_numbers_came_from() -> None:
    model = load_model()

    assert model.provenance["script"] == "bench/fit_reader.py"
    assert model.provenance["data"] and model.provenance["cross_validated"]
    assert 0.0 < model.threshold < 1.0


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda data: "{not json", "invalid JSON at line 1"),
        (lambda data: {**data, "format": 99}, "format 99"),
        (lambda data: {**data, "bias": "high"}, "field 'bias' must be a finite number"),
        (lambda data: {**data, "features": {**data["features"], "moonphase": data["features"]["semantic"]}}, "moonphase"),
        (lambda data: {**data, "features": {k: v for k, v in data["features"].items() if k != "semantic"}}, "'semantic' is missing"),
        (lambda data: {**data, "features": {**data["features"], "lead": {"weight": 1, "mean": 0, "scale": 0}}}, "features.lead.scale must be positive"),
    ],
    ids=["not-json", "format", "bias", "unknown-feature", "missing-feature", "zero-scale"],
)  # fmt: skip
def test_a_broken_weights_file_is_refused_with_the_field_named(tmp_path: Path, break_it: object, message: str) -> None:
    data = load_model().to_json()
    broken = break_it(data)  # type: ignore[operator]
    path = tmp_path / "weights.json"
    path.write_text(broken if isinstance(broken, str) else json.dumps(broken), encoding="utf-8")

    with pytest.raises(ConfigError, match=message) as raised:
        load_model(path)
    assert str(path) in str(raised.value)


def test_a_missing_weights_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fit_reader.py"):
        load_model(tmp_path / "nowhere.json")


# -- answers in readers' words on the demo corpus --------------------------------------------------------


# The three examples. Two still fail, and are kept as strict expected failures so that the day they
# pass is noticed. "ECB" now matches "The European Central Bank" (the lead's subject is covered), but nothing
# in the article says "decide" or a word near it, and the best sentence stays under the threshold. Kestrel-1's
# lead now reaches the reader (a lead is exempt from the per-article limit) and outranks the mission's cost,
# but "is scheduled to launch" in Kestrel-2's sentence still beats "lifting off" for "launch".
KNOWN_MISS = pytest.mark.xfail(strict=True, reason="see the comment above")


@pytest.mark.parametrize(
    ("question", "expected", "article"),
    [
        ("Who does Putin blame for the war?", "Washington", "putin-gaza"),
        (
            "Who holds the Calder Ridge fire's crews back from Ashby, says the fire chief?",
            "Okoro",
            "wire-2024-0729-fire",
        ),
        pytest.param("What did the ECB decide?", "3.75%", "ecb-rate-cut", marks=KNOWN_MISS),
        pytest.param("When did the Kestrel-1 launch?", "19 March", "kestrel-1-launch", marks=KNOWN_MISS),
    ],
)
def test_questions_in_other_words_are_answered(
    demo_assistant: Assistant, question: str, expected: str, article: str
) -> None:
    answer = demo_assistant.ask(question, as_of="2024-12-31")

    assert not answer.abstained
    assert expected in answer.text
    assert answer.citations[0].article_id == article
    assert answer.confidence is not None and 0.0 < answer.confidence <= 1.0


@pytest.mark.parametrize(
    "question",
    ["What did Joe Biden say in response to Putin's remarks?", "What is the population of Harborton?"],
)
def test_an_on_topic_question_the_articles_do_not_answer_is_declined(demo_assistant: Assistant, question: str) -> None:
    answer = demo_assistant.ask(question, as_of="2024-12-31")

    assert answer.abstained, answer.text
    assert answer.citations == []


def test_the_natural_question_set_is_mostly_answered_right_and_the_rest_declined(
    demo_settings: Settings, embedder: Embedder
) -> None:
    run = run_eval(NATURAL, demo_settings, workers=1, assistant=Assistant.from_settings(demo_settings))
    summary = run.summary

    # Floors, not the targets (0.80 / 0.80, not met: docs/quality.md has the measured numbers).
    assert summary["answer_contains"] >= 0.35
    assert summary["abstain_recall"] >= 0.3


# -- a library of one article -------------------------------------------------------------------------


def _one_article_assistant(path: Path, tmp_path: Path, embedder: Embedder) -> Assistant:
    from assistant.store import Store

    settings = clean_settings(store=tmp_path / "one", upload_dir=tmp_path / "uploads")
    assistant = Assistant(settings, Store.from_settings(settings, embedder))
    report = assistant.stored.ingest([path])
    assert len(report.added) == 1
    return assistant


def test_a_library_of_one_demo_article_answers_with_both_figures(
    demo_dir: Path, tmp_path: Path, embedder: Embedder
) -> None:
    assistant = _one_article_assistant(demo_dir / "putin-gaza.txt", tmp_path, embedder)

    answer = assistant.ask(HAMAS, as_of="2024-06-07")

    assert not answer.abstained
    assert "36,000" in answer.text and "25,000" in answer.text
    assert answer.citations and all(c.article_id == "putin-gaza" for c in answer.citations)


@pytest.mark.shared
def test_a_library_of_the_seed_article_answers_with_both_figures(
    shared_dir: Path, tmp_path: Path, embedder: Embedder
) -> None:
    seed = shared_dir / "data" / "seed-article.txt"
    if not seed.exists():
        pytest.skip("../shared/data/seed-article.txt is absent")
    copy = tmp_path / "seed-article.txt"
    shutil.copy(seed, copy)
    assistant = _one_article_assistant(copy, tmp_path, embedder)

    answer = assistant.ask(HAMAS)

    assert not answer.abstained, answer.text
    assert "36,000" in answer.text and "25,000" in answer.text
    assert answer.citations


def test_a_low_confidence_answer_is_shown_as_such() -> None:
    from assistant.models import LOW_CONFIDENCE, Answer
    from assistant.ui import answer_html

    sure = Answer("q", "It rose. [1]", [], abstained=False, confidence=0.9)
    unsure = replace(sure, confidence=LOW_CONFIDENCE / 2)

    assert "Low confidence" not in answer_html(sure)
    assert "Low confidence" in answer_html(unsure)
