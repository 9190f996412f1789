"""Extractive answers on the demo corpus: right facts, exact citations, attributed quotes, abstention, follow-ups, user errors."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from assistant.answer import Candidate, Draft, ExtractiveAnswerer
from assistant.chain import Assistant, rewrite_followup
from assistant.embeddings import Embedder
from assistant.errors import BackendUnavailableError, BadQuestionError, DossierError, EmptyStoreError
from assistant.models import Answer, Passage
from assistant.question import analyse
from assistant.question import answer_type as question_type
from assistant.rarity import Rarity
from assistant.reader import load_model
from assistant.settings import Settings
from assistant.store import Store

HAMAS = "What figures did Hamas report?"
ATTRIBUTION = re.compile(r"\b(said|says|told|according to|added|stated|wrote|asked)\b", re.I)


def assert_citations_are_exact(answer: Answer, store: Store) -> None:
    """Every citation's sentence is the article's own text at [start:end], inside the cited passage, marked in the text."""
    assert answer.citations
    for citation in answer.citations:
        article = store.get_article(citation.article_id)
        assert citation.sentence == article.text[citation.start : citation.end]
        assert citation.sentence in citation.passage
        assert citation.passage in article.text
        assert f"[{citation.n}]" in answer.text
        assert (citation.title, citation.source, citation.published, citation.url) == (
            article.title, article.source, article.published, article.url,  # never a server path (issue 10)
        )  # fmt: skip


# -- the demo corpus ------------------------------------------------------------------------------

# Behaviour the fitted reader (issue 9) lost on the demo corpus. "What did the fire chief say?" is answered
# again (with word vectors), but with one sentence: a second one from the same article stays under
# `extra_ratio` of the best, so the article-order test has nothing to order. Strict, so a fix is noticed.
READER_REGRESSION = pytest.mark.xfail(strict=True, reason="fitted reader declines; see the comment above")


def test_hamas_figures_are_answered_with_both_figures_from_the_right_article(demo_assistant: Assistant) -> None:
    answer = demo_assistant.ask(HAMAS, as_of="2024-06-07")

    assert not answer.abstained
    assert "36,000" in answer.text and "25,000" in answer.text
    assert "putin-gaza" in {c.article_id for c in answer.citations}
    assert any("36,000" in c.sentence and "25,000" in c.sentence for c in answer.citations)
    assert_citations_are_exact(answer, demo_assistant.store)
    assert 1 <= len(answer.sentences) <= 3
    assert all(s.citations and not s.unsupported for s in answer.sentences)


def test_figures_are_dated_because_they_change(demo_assistant: Assistant) -> None:
    answer = demo_assistant.ask(HAMAS, as_of="2024-06-07")

    assert answer.text.startswith("As of 6 June 2024: ")
    assert answer.as_of == "2024-06-07"


@pytest.mark.parametrize(
    ("question", "expected", "article"),
    [
        ("How many homes were destroyed by the Calder Ridge fire?", "23 homes", "wire-2024-0729-fire"),
        ("Who won the Port Averly mayoral race?", "Elena Vasquez", "port-averly-election"),
        ("When do the new ECB rates take effect?", "June 12", "ecb-rate-cut"),
        ("What did the ECB cut its deposit facility rate to?", "3.75%", "ecb-rate-cut"),
        ("Which rocket launched the Kestrel-1 weather satellite?", "Aurora-3", "kestrel-1-launch"),
    ],
)
def test_questions_of_each_type_are_answered_from_the_right_article(
    demo_assistant: Assistant, question: str, expected: str, article: str
) -> None:
    answer = demo_assistant.ask(question, as_of="2024-12-31")

    assert expected in answer.text
    assert [c.article_id for c in answer.citations][:1] == [article]
    assert_citations_are_exact(answer, demo_assistant.store)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many people died?", "number"),
        ("What figures did Hamas report?", "number"),
        ("What was the death toll?", "number"),
        ("Who won the race?", "person"),
        ("Which company reported record revenue?", "person"),
        ("When do the new rates take effect?", "date"),
        ("What year did construction begin?", "date"),
        ("Where did Putin speak?", "place"),
        ("What country elected a new leader this week?", "person"),
        ("Which wildly popular show was renewed?", "entity"),
        ("How wide is the new bridge?", "number"),
        ("Why did the bank cut rates?", "other"),
    ],
)
def test_question_type(question: str, kind: str) -> None:
    assert question_type(question) == kind


def test_quoted_speech_stays_attributed_on_the_demo_corpus(demo_assistant: Assistant) -> None:
    answer = demo_assistant.ask("What did the fire chief say?", as_of="2024-07-30")

    assert "Okoro" in answer.text
    assert_quotes_are_attributed([s.text for s in answer.sentences])


def assert_quotes_are_attributed(sentences: list[str]) -> None:
    """A sentence with a quote and no speaker comes right after, or right before, one that names the speaker."""
    for i, sentence in enumerate(sentences):
        if re.search(r"[\"\u201c\u201d]", sentence) and not ATTRIBUTION.search(sentence):
            neighbours = sentences[max(0, i - 1) : i] + sentences[i + 1 : i + 2]
            assert any(ATTRIBUTION.search(n) for n in neighbours), sentences


# Team-written passages: the speaker of a quote is named in the sentence next to it.
BRIDGE = (
    "The harbour bridge in Larsholm opened on Tuesday after four years of work.\n\n"
    'Mayor Henrik Sand cut the ribbon at ten. "This bridge will carry 18,000 cars a day and end the ferry queues '
    'for good," she told the crowd. "It was worth every crown of the 212 million it cost."'
)
FERRY = (
    'Mayor Henrik Sand opened the harbour bridge on Tuesday. "The bridge ends forty years of ferry queues." '
    "Those were the first words of Sand, who said the town had waited long enough."
)


@pytest.mark.parametrize(
    ("text", "question", "quote"),
    [
        (
            BRIDGE,
            "What did the mayor say about the bridge cost?",
            "worth every crown",
        ),  # a quote among several sentences
        (FERRY, "What ends forty years of ferry queues?", "forty years"),  # the speaker named after the quote
        (  # typographic quotes, as most news sites write them; the quote ends the sentence
            BRIDGE.replace(' "', " \u201c").replace('," ', ",\u201d ").replace('."', ".\u201d"),
            "What did the mayor say about the bridge cost?",
            "worth every crown",
        ),
    ],
)
def test_a_quote_in_the_answer_brings_its_speaker(text: str, question: str, quote: str, embedder: Embedder) -> None:
    passage = Passage("bridge#v#0", "bridge", text, 0, len(text), title="Larsholm opens its harbour bridge")

    draft = ExtractiveAnswerer(embed=embedder.encode_cached).answer(question, [passage])

    sentences = [re.sub(r"\s*\[\d+\]$", "", part) for part in re.split(r"(?<=\])\s+", draft.text)]
    assert any(quote in s for s in sentences)
    assert_quotes_are_attributed(sentences)


@READER_REGRESSION
def test_sentences_of_one_article_keep_the_article_order(demo_assistant: Assistant) -> None:
    answer = demo_assistant.ask("What did the fire chief say?", as_of="2024-07-30")

    starts = [c.start for c in answer.citations[1:] if c.article_id == "wire-2024-0729-fire"]
    assert len(starts) >= 2 and starts == sorted(starts)


def test_the_best_sentence_leads_and_the_extras_follow_in_the_article_s_order() -> None:
    text = "Turnout was 61%. Vasquez took 52% of the vote. Oduya won 44% of it. Brandt won 4%."
    spans = [(m.start(), m.end()) for m in re.finditer(r"[^.]+\.", text)]
    spans = [(start + (text[start] == " "), end) for start, end in spans]
    passage = Passage("poll#v#0", "poll", text, 0, len(text))
    # The third sentence is the best; the first two come close and add figures of their own.
    probabilities = {2: 0.9, 1: 0.8, 0: 0.7, 3: 0.1}
    candidates = [
        Candidate(0, passage, spans[i][0], spans[i][1], text[spans[i][0] : spans[i][1]], p)
        for i, p in sorted(probabilities.items(), key=lambda item: -item[1])
    ]
    answerer = ExtractiveAnswerer(model=replace(load_model(), threshold=0.5, extra_ratio=0.5))

    draft = answerer.draft(analyse("What share of the vote did Oduya win?", Rarity()), candidates)

    assert draft.pieces is not None
    assert [piece for piece, _ in draft.pieces] == [
        "Oduya won 44% of it.",
        "Turnout was 61%.",
        "Vasquez took 52% of the vote.",
    ]


# -- abstention -----------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["What is the capital of Mongolia?", "Who is the prime minister of Canada?"])
def test_a_question_the_articles_do_not_answer_is_declined_with_the_closest_passages(
    demo_assistant: Assistant, question: str
) -> None:
    answer = demo_assistant.ask(question, as_of="2024-12-31")

    assert answer.abstained
    assert answer.citations == [] and answer.sentences == []
    assert answer.text.startswith("The articles do not answer this question.")
    assert "[" not in answer.text
    assert 1 <= len(answer.closest) <= 3
    assert all(p.text and p.article_id for p in answer.closest)


# Team-written: the same passage with and without what a question asks for.
LAUNCH = "The Kestrel-1 weather satellite reached orbit after a smooth launch from Vardø{when}."


@pytest.mark.parametrize(
    ("question", "lacking", "having"),
    [
        # A "when" question needs a date in the answer sentence.
        pytest.param(
            "When did the Kestrel-1 weather satellite launch?",
            LAUNCH.format(when=""),
            LAUNCH.format(when=" on 3 March 2025"),
            id="no-date-for-when",
        ),
        # A question naming someone the passage never mentions is about something else.
        pytest.param(
            "What did Ingrid Halvorsen say about the Kestrel-1 weather satellite launch?",
            LAUNCH.format(when="") + " Engineers said the launch was smooth.",
            LAUNCH.format(when="") + " Ingrid Halvorsen said the launch was smooth.",
            id="named-person-absent",
        ),
    ],
)
def test_a_sentence_lacking_what_the_question_asks_for_is_not_trusted(
    question: str, lacking: str, having: str, embedder: Embedder
) -> None:
    answerer = ExtractiveAnswerer(embed=embedder.encode_cached)

    def confidence(text: str) -> float:
        return answerer.answer(question, [Passage("kestrel#v#0", "kestrel", text, 0, len(text))]).confidence

    assert confidence(lacking) < 0.7 * confidence(having)
    assert answerer.answer(question, [Passage("k#v#0", "k", having, 0, len(having))]).abstained is False


@pytest.mark.parametrize(
    "best", ["The band's new single earned it the prize.", "The band's new single earned it the prize on Saturday."]
)
def test_an_answer_that_names_nothing_brings_the_sentence_before_that_names_it(best: str, embedder: Embedder) -> None:
    # "Which band ...": the sentence that matches says "the band"; the one before names it. A day is not a name.
    text = f"Harrow Lane played last in the regional final. {best} Tickets sold out in an hour."
    draft = ExtractiveAnswerer(embed=embedder.encode_cached).answer(
        "Which band won the prize for its new single?", [Passage("b#v#0", "b", text, 0, len(text))]
    )

    assert not draft.abstained
    assert draft.text.startswith("Harrow Lane played last") and best in draft.text


def test_a_question_in_the_article_is_not_an_answer(embedder: Embedder) -> None:
    text = (
        "Which port will close its ferry terminal for the winter? "
        "Larsholm will close its ferry terminal from November to March, the harbour office said."
    )
    draft = ExtractiveAnswerer(embed=embedder.encode_cached).answer(
        "Which port will close its ferry terminal for the winter?", [Passage("p#v#0", "p", text, 0, len(text))]
    )

    assert not draft.abstained
    assert draft.text.startswith("Larsholm will close") and "?" not in draft.text


def test_a_long_question_is_trusted_though_its_rarest_word_is_not_in_the_article(embedder: Embedder) -> None:
    # Quiz-style questions retell the story; one word of the retelling ("moonlit") need not be in the article.
    text = "Kelby harbour reopened its fish market on Saturday after a storm flooded the old hall in October."
    question = (
        "After a moonlit storm flooded the old hall in October, which harbour reopened its fish market on Saturday?"
    )
    answerer = ExtractiveAnswerer(embed=embedder.encode_cached)  # "moonlit" is rare in general English

    def answer(passage_text: str) -> Draft:
        return answerer.answer(question, [Passage("k#v#0", "k", passage_text, 0, len(passage_text))])

    without_word, with_word = answer(text), answer(text + " The night was moonlit.")
    assert not without_word.abstained and "Kelby" in without_word.text
    assert without_word.confidence >= 0.9 * with_word.confidence


def test_a_later_article_is_not_used_to_answer_and_the_assistant_says_so(demo_assistant: Assistant) -> None:
    answer = demo_assistant.ask("What did Northbridge United pay for Tomas Keller?", as_of="2024-06-30")

    assert answer.abstained or "48 million" not in answer.text
    assert all(p.published <= "2024-06-30" for p in answer.retrieved)


# -- follow-ups -----------------------------------------------------------------------------------


def test_a_follow_up_is_answered_in_the_conversation_s_context(demo_assistant: Assistant) -> None:
    first = demo_assistant.ask(HAMAS, as_of="2024-06-07")
    history = [{"role": "user", "content": HAMAS}, {"role": "assistant", "content": first.text}]

    answer = demo_assistant.ask("And what did Israel say?", history, as_of="2024-06-07")

    assert answer.rewritten_question and "Israel" in answer.rewritten_question
    assert "figures" in answer.rewritten_question  # carried over from the earlier question
    assert not answer.abstained
    assert "14,000" in answer.sentences[0].text  # Israel's figure leads the answer
    assert "putin-gaza" in {c.article_id for c in answer.citations}
    assert_citations_are_exact(answer, demo_assistant.store)
    assert answer.question == "And what did Israel say?"


def test_history_as_pairs_works_like_messages(demo_assistant: Assistant) -> None:
    as_pairs = demo_assistant.ask("And what did Israel say?", [(HAMAS, "...")], as_of="2024-06-07")

    assert "14,000" in as_pairs.text


@pytest.mark.parametrize(
    ("question", "history", "expected"),
    [
        ("And what did Israel say?", [(HAMAS, "...")], "What figures did Israel report?"),  # the same question of Israel
        ("And what about Joe Biden?", [("What did Vladimir Putin say about Gaza?", "...")], "What did Joe Biden say about Gaza?"),
        ("What about the deposit rate?", [{"role": "user", "content": "Did the ECB cut rates?"}], "What about the deposit rate about ECB cut rates?"),
        ("Who won the Port Averly mayoral race?", [(HAMAS, "...")], "Who won the Port Averly mayoral race?"),  # not a follow-up
        ("And what did Israel say?", None, "And what did Israel say?"),  # nothing to follow
    ],
)  # fmt: skip
def test_rewrite_followup(question: str, history: list[object] | None, expected: str) -> None:
    assert rewrite_followup(question, history) == expected  # type: ignore[arg-type]


# -- streaming without an LLM -----------------------------------------------------------------------


def test_stream_yields_pieces_then_the_answer(demo_assistant: Assistant) -> None:
    items = list(demo_assistant.stream(HAMAS, as_of="2024-06-07"))

    pieces, final = items[:-1], items[-1]
    assert isinstance(final, Answer) and "36,000" in final.text
    assert len(pieces) > 3 and all(isinstance(piece, str) for piece in pieces)
    assert "36,000" in "".join(pieces)  # type: ignore[arg-type]


def test_the_streamed_text_is_the_text_that_stays(demo_assistant: Assistant) -> None:
    # No jump at the end: the "As of ..." prefix streams first, and the pieces add up to the final text.
    *pieces, final = demo_assistant.stream(HAMAS, as_of="2024-06-07")

    assert isinstance(final, Answer) and final.text.startswith("As of 6 June 2024: ")
    assert "".join(pieces).strip() == final.text.strip()  # type: ignore[arg-type]


def test_timings_are_reported(demo_assistant: Assistant) -> None:
    answer = demo_assistant.ask(HAMAS, as_of="2024-06-07")

    assert {"embed_ms", "dense_ms", "lexical_ms", "retrieve_ms", "answer_ms", "verify_ms", "total_ms"} <= set(
        answer.timings
    )
    assert all(value >= 0 for value in answer.timings.values())


# -- user errors ----------------------------------------------------------------------------------


def test_an_empty_store_says_to_ingest(store: Store, settings: Settings) -> None:
    with pytest.raises(EmptyStoreError) as caught:
        Assistant(settings, store).ask(HAMAS)

    message = str(caught.value)
    assert message.startswith("no articles yet") and message.endswith(": run dossier ingest PATH")


@pytest.mark.parametrize(
    ("question", "kwargs", "message"),
    [
        ("", {}, "the question is empty"),
        ("   \n ", {}, "the question is empty"),
        ("Why? " * 250, {}, "the question is 1249 characters long; the limit is 1000"),
        (HAMAS, {"as_of": "6 June"}, "as_of '6 June' is not a date: use YYYY-MM-DD"),
        (HAMAS, {"k": 99}, "k must be between 1 and 50"),
    ],
    ids=["empty", "blank", "too-long", "bad-as-of", "bad-k"],
)
def test_a_bad_question_is_refused_with_a_clear_message(
    demo_assistant: Assistant, question: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(BadQuestionError, match=re.escape(message)):
        demo_assistant.ask(question, **kwargs)  # type: ignore[arg-type]


def test_the_question_limit_is_a_setting(demo_settings: Settings, embedder: Embedder) -> None:
    settings = demo_settings.with_overrides(max_question_chars=20)
    assistant = Assistant(settings, Store.from_settings(settings, embedder=embedder))

    with pytest.raises(BadQuestionError, match="limit is 20"):
        assistant.ask("What figures did Hamas report in Gaza?")


def test_an_llm_server_that_is_down_names_its_url_and_the_way_out(demo_settings: Settings, embedder: Embedder) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    settings = demo_settings.with_overrides(llm="openai:some-model", openai_base_url=url, llm_timeout=5)
    assistant = Assistant(settings, Store.from_settings(settings, embedder=embedder))

    with pytest.raises(BackendUnavailableError) as caught:
        assistant.ask(HAMAS)

    assert url in str(caught.value) and "--llm extractive" in str(caught.value)
    assert isinstance(caught.value, DossierError)


def test_a_missing_model_is_named(llm_settings: Settings, embedder: Embedder) -> None:
    settings = llm_settings.with_overrides(llm="openai:no-such-model")
    assistant = Assistant(settings, Store.from_settings(settings, embedder=embedder))

    with pytest.raises(BackendUnavailableError) as caught:
        assistant.ask(HAMAS)

    assert "model 'no-such-model' is not available on http://127.0.0.1:" in str(caught.value)
    assert "--llm extractive" in str(caught.value)
