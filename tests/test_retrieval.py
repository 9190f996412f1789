"""Hybrid retrieval: BM25 finds what the embedding misses, filters, the as-of date and time windows, diversity, freshness."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from conftest import clean_settings, synthetic_questions

from assistant.chain import Assistant
from assistant.dates import TimeWindow
from assistant.embeddings import Embedder
from assistant.filters import Filters
from assistant.models import Passage
from assistant.retrieval import Retriever, diversify, fuse
from assistant.settings import Settings
from assistant.store import Store
from ingest.pipeline import ingest_paths

# Eight short local-news articles the team wrote (fictional town). A rare name (council leader Tamsin
# Oyelaran) and a figure (7,316 boxes) each appear once, in a passing sentence of one article.
KELBY = [
    ("harbour-dredging", "Harbour dredging to start in spring", "Kelby Herald", "2024-03-04",
     "Dredging of Kelby harbour will start in April and last about ten weeks, the port authority said on Monday. "
     "The work will deepen the main channel so that larger cargo ships can dock. Fishing boats will use the north "
     "quay while the work goes on."),
    ("ferry-timetable", "New ferry timetable adds late sailings", "Kelby Herald", "2024-03-11",
     "The island ferry will run two extra late sailings on Fridays and Saturdays from May, the operator said. "
     "Islanders had asked for later boats for years. The last ferry will now leave Kelby at 23:40."),
    ("port-jobs", "Port expansion to bring new jobs", "Coast Times", "2024-03-18",
     "The expansion of Kelby port will create about 300 jobs over the next five years, the regional council said. "
     "A new container terminal is planned on reclaimed land east of the harbour. Council leader Tamsin Oyelaran "
     "called the plan a turning point for the town and said building could begin in 2026."),
    ("fish-prices", "Fish prices fall at Kelby auction", "Coast Times", "2024-03-25",
     "Prices at the Kelby fish auction fell for the third week in a row as boats landed large catches of cod and "
     "haddock. Traders said demand from restaurants had been weak since the winter. The auction sold 7,316 boxes "
     "of fish last week."),
    ("lighthouse", "Old lighthouse to become a museum", "Kelby Herald", "2024-04-02",
     "The disused lighthouse on Kelby Point will reopen as a small maritime museum next summer. Volunteers have "
     "restored the lamp room and the keeper's cottage. The museum will show models of ships built in the town's yards."),
    ("sea-wall", "Storm damages sea wall", "Coast Times", "2024-04-09",
     "A winter storm has damaged a section of the sea wall along Kelby's promenade, and repairs will take most of "
     "the spring. The council closed the promenade to walkers while engineers check the wall. Waves of up to six "
     "metres hit the coast during the storm."),
    ("sailing-school", "Sailing school opens for children", "Kelby Herald", "2024-04-16",
     "A new sailing school for children opened at the marina on Saturday. Lessons are free for pupils of the "
     "town's schools during the first year. The school has eight small dinghies and four instructors."),
    ("harbour-council", "Council debates harbour budget", "Coast Times", "2024-04-23",
     "The town council debated the harbour budget for next year on Tuesday. Members argued over how much to spend "
     "on the quays and how much on the marina. A final vote is expected in May."),
]  # fmt: skip
KELBY_FILES = {
    "kelby.jsonl": "".join(
        json.dumps({"id": i, "title": t, "source": s, "published": p, "text": x}) + "\n" for i, t, s, p, x in KELBY
    )
}


@pytest.fixture
def kelby(ingested: Callable[[str, dict[str, str]], Path], settings: Settings, embedder: Embedder) -> Retriever:
    folder = ingested("kelby", KELBY_FILES)
    return Retriever(Store.from_settings(settings.with_overrides(store=folder), embedder=embedder))


@pytest.fixture
def demo(demo_settings: Settings, embedder: Embedder) -> Retriever:
    return Retriever(Store.from_settings(demo_settings, embedder=embedder), max_per_article=2)


def ids(passages: list[Passage]) -> list[str]:
    return [passage.article_id for passage in passages]


# -- names and numbers through BM25 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "article", "dense_misses_within"),
    [
        ("Oyelaran", "port-jobs", 3),  # a rare name: the embedding of a lone surname is noise
        ("Which article mentions 7,316?", "fish-prices", 1),  # a figure: the embedding does not rank it first
    ],
)
def test_rare_names_and_figures_are_found_through_bm25(
    kelby: Retriever, question: str, article: str, dense_misses_within: int
) -> None:
    retrieved = kelby.retrieve(question, k=3)
    dense = kelby.store.search(kelby.store.embedder.encode_query(question), 8)
    lexical = kelby.lexical.search(question, 8, Filters(), None)

    assert article not in ids(dense)[:dense_misses_within]  # the premise: the embedding alone misses it
    assert ids(lexical)[:1] == [article]  # BM25 finds it ...
    assert ids(retrieved.passages)[:1] == [article]  # ... and fusion ranks it first
    assert "Oyelaran" in retrieved.passages[0].text or "7,316" in retrieved.passages[0].text


def test_numbers_match_however_they_are_written(kelby: Retriever) -> None:
    for written in ("7,316", "7316"):
        assert ids(kelby.lexical.search(f"{written} boxes", 3, Filters(), None))[:1] == ["fish-prices"]


def test_a_question_with_no_word_in_the_corpus_finds_nothing_lexically(kelby: Retriever) -> None:
    assert kelby.lexical.search("Zyxwv qwerty", 5, Filters(), None) == []
    assert kelby.retrieve("Zyxwv qwerty", k=3).passages  # the dense side still offers the closest passages


# -- filters ------------------------------------------------------------------------------------


FILTER_CASES = pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        (Filters(sources=("Dossier Wire",)), lambda p: p.source == "Dossier Wire"),
        (
            Filters(sources=("Harbor Daily", "The Daily Ledger")),
            lambda p: p.source in {"Harbor Daily", "The Daily Ledger"},
        ),
        (Filters(article_ids=("putin-gaza", "ecb-rate-cut")), lambda p: p.article_id in {"putin-gaza", "ecb-rate-cut"}),
        (Filters(since=date(2024, 7, 1)), lambda p: p.published >= "2024-07-01"),
        (Filters(until=date(2024, 6, 30)), lambda p: "" < p.published <= "2024-06-30"),
        (
            Filters(since=date(2024, 7, 1), until=date(2024, 8, 31)),
            lambda p: "2024-07-01" <= p.published <= "2024-08-31",
        ),
    ],
    ids=["one-source", "two-sources", "article-ids", "since", "until", "range"],
)


@FILTER_CASES
def test_filters_restrict_both_sides(demo: Retriever, filters: Filters, allowed: Callable[[Passage], bool]) -> None:
    question = "record figures reported"
    unfiltered = demo.retrieve(question, k=5).passages
    assert not all(allowed(p) for p in unfiltered)  # the filter has something to remove

    filtered = demo.retrieve(question, k=5, filters=filters).passages

    assert filtered and all(allowed(p) for p in filtered)
    assert all(allowed(p) for p in demo.lexical.search(question, 50, filters, None))


@FILTER_CASES
def test_filtering_after_chroma_finds_what_chroma_s_own_filter_finds(
    demo: Retriever, filters: Filters, allowed: Callable[[Passage], bool]
) -> None:
    # The retriever filters Chroma's unfiltered nearest ids itself; with no room for that
    # (unfiltered_limit=0) it leaves the filtering to Chroma. Both must give the same passages.
    chroma_filters = Retriever(demo.store, unfiltered_limit=0)
    for question in ("record figures reported", "Who won the election?", "rate cut"):
        ours = demo.retrieve(question, k=5, filters=filters, as_of=date(2024, 12, 31)).passages
        theirs = chroma_filters.retrieve(question, k=5, filters=filters, as_of=date(2024, 12, 31)).passages

        assert [p.chunk_id for p in ours] == [p.chunk_id for p in theirs]
        assert all(allowed(p) for p in ours)


def test_until_excludes_undated_articles(demo: Retriever) -> None:
    question = "Coastal Line trains Alderport Brevik"
    assert ids(demo.retrieve(question, k=3).passages)[0] == "coastal-line-opening"  # undated in the store

    assert "coastal-line-opening" not in ids(
        demo.retrieve(question, k=5, filters=Filters(until=date(2024, 12, 31))).passages
    )


def test_filter_on_an_unknown_source_finds_nothing(demo: Retriever) -> None:
    assert demo.retrieve("record", k=5, filters=Filters(sources=("No Such Paper",))).passages == []


# -- the as-of date and time expressions --------------------------------------------------------


@pytest.mark.parametrize("as_of", [date(2024, 6, 5), date(2024, 7, 1), date(2024, 8, 1), date(2024, 10, 20)])
def test_as_of_never_returns_a_later_article(demo: Retriever, as_of: date) -> None:
    for question in ("Vasquez Port Averly mayoral race", "record", "What happened this week?"):
        passages = demo.retrieve(question, k=5, as_of=as_of).passages

        assert passages
        assert all(p.published <= as_of.isoformat() for p in passages), (question, as_of)


def test_an_answer_as_of_before_the_article_does_not_cite_it(demo_assistant: Assistant) -> None:
    before = demo_assistant.ask("Who won the Port Averly mayoral race?", as_of="2024-10-01")
    after = demo_assistant.ask("Who won the Port Averly mayoral race?", as_of="2024-11-07")

    assert "port-averly-election" not in {c.article_id for c in before.citations}
    assert "Vasquez" not in before.text
    assert [c.article_id for c in after.citations][:1] == ["port-averly-election"]


@pytest.mark.parametrize(
    ("question", "as_of", "expected"),
    [
        ("What happened yesterday?", date(2024, 7, 30), {"wire-2024-0729-fire"}),
        ("What happened yesterday?", date(2024, 7, 25), {"northwind-earnings"}),
        ("What happened this week?", date(2024, 8, 18), {"wire-2024-0814-transfer"}),
        ("Which record was set this week?", date(2024, 8, 18), {"wire-2024-0814-transfer"}),
        ("Which record was set in June?", date(2024, 12, 1), {"wire-2024-0604-heat", "ecb-rate-cut"}),
    ],
)  # without the window's boost, each of these puts another article first
def test_a_time_expression_prefers_articles_in_its_window(
    demo: Retriever, question: str, as_of: date, expected: set[str]
) -> None:
    retrieved = demo.retrieve(question, k=5, as_of=as_of)

    assert retrieved.window is not None
    assert ids(retrieved.passages)[0] in expected
    window = retrieved.window
    assert window.start.isoformat() <= retrieved.passages[0].published <= window.end.isoformat()


def test_the_window_boost_is_what_moves_an_older_article_up() -> None:
    older = Passage("old#v#0", "old", "text", 0, 4, published="2024-07-24")
    newer = Passage("new#v#0", "new", "text", 0, 4, published="2024-07-29")
    window = TimeWindow(date(2024, 7, 22), date(2024, 7, 26), "last week")

    assert ids(fuse([[newer, older]], as_of=date(2024, 7, 30))) == ["new", "old"]
    assert ids(fuse([[newer, older]], window=window, as_of=date(2024, 7, 30))) == ["old", "new"]


def test_this_week_s_news_outranks_a_better_match_from_months_before() -> None:
    # Ranked 16th by both searches, this week's article still beats the best match from March;
    # between articles years old, rank alone decides.
    old = Passage("old#v#0", "old", "text", 0, 4, published="2024-03-02")
    recent = Passage("recent#v#0", "recent", "text", 0, 4, published="2024-07-26")
    between = [Passage(f"mid{i}#v#0", f"mid{i}", "text", 0, 4, published="2024-05-01") for i in range(14)]
    ranking = [old, *between, recent]

    assert ids(fuse([ranking, ranking], as_of=date(2024, 7, 30)))[0] == "recent"
    assert ids(fuse([ranking, ranking], as_of=date(2029, 1, 1)))[0] == "old"


# -- diversity ----------------------------------------------------------------------------------


def test_at_most_max_per_article_passages_of_one_article_in_the_first_k(
    demo_settings: Settings, embedder: Embedder
) -> None:
    store = Store.from_settings(demo_settings, embedder=embedder)
    question = "Putin Gaza Israel Hamas war Washington peace"
    for limit in (1, 2):
        passages = Retriever(store, max_per_article=limit).retrieve(question, k=5).passages[:5]
        beyond_lead = [p.article_id for p in passages if p.start > 0]  # an article's lead is exempt (below)
        counts = {article: beyond_lead.count(article) for article in beyond_lead}

        assert max(counts.values()) == limit
        assert counts["putin-gaza"] == limit  # the article has four chunks that all match
        assert ids(passages).count("putin-gaza") <= limit + 1


def test_near_identical_passages_appear_once(store: Store, tmp_path: Path) -> None:
    story = (
        "The Vell river burst its banks at Ostby on Sunday night, flooding 140 homes and the railway station. "
        "Rescue crews used boats to reach families on the lower streets, and the mayor opened the sports hall "
        "as a shelter. Forecasters expect the water to fall by Wednesday."
    )
    files = {
        "a.txt": f"title: Vell floods Ostby\nsource: Ostby Post\n\n{story}\n",
        "b.txt": f"title: River floods Ostby homes\nsource: Valley Wire\n\n{story.replace('night', 'evening')}\n",
        "c.txt": "title: Ostby station reopens\nsource: Ostby Post\n\nTrains returned to Ostby station on Thursday "
        "after the flood water fell and engineers checked the tracks.\n",
    }
    for name, text in files.items():
        (tmp_path / "river" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "river" / name).write_text(text, encoding="utf-8")
    report = ingest_paths([tmp_path / "river"], store)
    assert len(report.added) == 3  # two near-copies under different names: not exact duplicates

    passages = Retriever(store).retrieve("How many homes did the Vell flood in Ostby?", k=3).passages

    assert len({p.article_id for p in passages} & {"a", "b"}) == 1
    assert "c" in ids(passages)


def test_diversify_drops_near_duplicates_and_defers_extra_passages_of_an_article() -> None:
    def p(article: str, n: int, text: str) -> Passage:
        start = 100 * (n + 1)  # none of them starts its article (a lead is exempt from the limit: below)
        return Passage(f"{article}#v#{n}", article, text, start, start + len(text))

    ranked = [
        p("a", 0, "the council voted for the new harbour budget on tuesday"),
        p("b", 0, "the council voted for the new harbour budget on tuesday evening"),  # near-duplicate of a#0
        p("a", 1, "fishing boats moved to the north quay during dredging"),
        p("a", 2, "prices at the fish auction fell for a third week"),
        p("c", 0, "the lighthouse will reopen as a museum next summer"),
    ]

    chosen = diversify(ranked, n=4, max_per_article=2, first=3)

    assert [x.chunk_id for x in chosen] == ["a#v#0", "a#v#1", "c#v#0", "a#v#2"]


def test_an_articles_lead_does_not_count_against_its_limit() -> None:
    """A question in other words than the article's body finds its facts in the lead: it is never deferred."""

    def p(article: str, start: int, text: str) -> Passage:
        return Passage(f"{article}#v#{start}", article, text, start, start + len(text))

    ranked = [
        p("a", 900, "the mission will cost 41 million over five years"),
        p("a", 1800, "the second satellite is scheduled for next spring"),
        p("a", 0, "the satellite reached orbit on 19 march after lifting off"),
        p("b", 0, "a harbour festival drew record crowds"),
    ]

    chosen = diversify(ranked, n=4, max_per_article=2, first=3)

    assert [x.chunk_id for x in chosen[:3]] == ["a#v#900", "a#v#1800", "a#v#0"]
    assert ids(chosen) == ["a", "a", "a", "b"]


# -- the lexical index follows the store ----------------------------------------------------------


def test_the_lexical_index_follows_ingest_and_removal(
    own_demo_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    store = Store.from_settings(own_demo_settings, embedder=embedder)
    retriever = Retriever(store)
    question = "Quorvath glacier retreat"
    assert "quorvath" not in ids(retriever.retrieve(question, k=3).passages)
    generation = store.generation()

    article = tmp_path / "quorvath.txt"
    article.write_text(
        "title: Quorvath glacier retreats 212 metres\ndate: 2024-06-03\nsource: Alpine Notes\n\n"
        "The Quorvath glacier retreated 212 metres last year, survey teams said.\n",
        encoding="utf-8",
    )
    Assistant(own_demo_settings, store).stored.ingest([article])

    assert store.generation() != generation
    found = retriever.retrieve(question, k=3)  # the same retriever: no restart needed
    assert ids(found.passages)[0] == "quorvath"
    assert ids(retriever.lexical.search(question, 3, Filters(), None))[:1] == ["quorvath"]

    store.remove("quorvath")

    assert "quorvath" not in ids(retriever.retrieve(question, k=5).passages)
    assert "quorvath" not in retriever.lexical.article_ids()
    assert retriever.lexical.search("Quorvath", 3, Filters(), None) == []


def test_the_lexical_index_sees_writes_made_through_another_store_object(
    own_demo_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    reader = Retriever(Store.from_settings(own_demo_settings, embedder=embedder))
    reader.retrieve("anything", k=1)  # loaded once
    writer = Store.from_settings(own_demo_settings, embedder=embedder)

    writer.remove("putin-gaza")

    assert "putin-gaza" not in ids(reader.retrieve("Putin Gaza Hamas figures", k=5).passages)


def test_texts_are_read_for_the_passages_kept_and_the_choice_is_the_same(
    synthetic_store: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fusion and diversity run on what the index knows of each candidate; only a prefix of the fused list is read
    from the store (longer when the per-article limit defers too many), and the passages chosen are those that
    reading every candidate would choose."""
    store = Store.from_settings(clean_settings(store=synthetic_store), embedder=embedder)
    retriever = Retriever(store, max_per_article=1)
    reads: list[int] = []
    passages = store.passages
    monkeypatch.setattr(store, "passages", lambda ids: reads.append(len(ids)) or passages(ids))
    cases = [(question, k, Filters()) for question in synthetic_questions(20) for k in (1, 12)]
    # Three articles only, asked by the first one's title: its chunks fill the fused list's head, and with one
    # passage per article (leads apart) the prefix must grow to find enough.
    records = store.list_articles()
    for first in range(0, 30, 3):
        three = records[first : first + 3]
        cases.append((three[0].title, 6, Filters(article_ids=tuple(record.id for record in three))))
    extended = 0
    for question, k, filters in cases:
        reads.clear()
        got = retriever.retrieve(question, k=k, filters=filters, depth=k)
        read_now, extended = sum(reads), extended + (len(reads) > 1)
        with monkeypatch.context() as patch:  # the same question, every candidate read before choosing
            patch.setattr(
                Retriever,
                "_diversified",
                lambda self, fused, n, first, known: diversify(
                    self._read(fused, known), n, self.max_per_article, first, words=self._words
                ),
            )
            reads.clear()
            expected = retriever.retrieve(question, k=k, filters=filters, depth=k)
        assert [(p.chunk_id, p.score, p.text, p.start) for p in got.passages] == [
            (p.chunk_id, p.score, p.text, p.start) for p in expected.passages
        ], question
        assert all(p.text and p.end > p.start >= 0 for p in got.passages)
        # (a filter this narrow makes Chroma filter, and its search returns the texts: nothing is read after)
        assert read_now < sum(reads) or sum(reads) == 0, (read_now, sum(reads))
    assert extended >= 3
