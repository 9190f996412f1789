"""Evaluation metrics: pure functions scoring retrieved articles, answer texts, citations and abstention.

Every metric's edge cases are in its docstring. A metric whose denominator is empty (no gold article,
no answer alternative, no citation...) is `None` (`null` in JSON), never 0.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from assistant.models import Answer, Citation, Passage

Metric = float | None


# -- metrics: retrieval ----------------------------------------------------------------------------


def ranked_articles(passages: Sequence[Passage]) -> list[str]:
    """The article ids of retrieved passages, in rank order, each article once at the rank of its best passage.

    Retrieval may return several passages of one article; ranking metrics score articles, so later
    passages of an article already seen are dropped. Ties in score keep the order retrieval returned:
    the list order is the ranking, scores are not consulted.

    >>> ranked_articles([Passage("a#1#0", "a", "", 0, 0), Passage("a#1#3", "a", "", 0, 0), Passage("b#1#0", "b", "", 0, 0)])
    ['a', 'b']
    """
    return list(dict.fromkeys(passage.article_id for passage in passages))


def first_rank(ranked: Sequence[str], gold: Iterable[str]) -> int | None:
    """The 1-based rank of the first gold article in `ranked`, or None when no gold article is there."""
    wanted = set(gold)
    return next((rank for rank, article_id in enumerate(ranked, start=1) if article_id in wanted), None)


def hit_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """1.0 when a gold article is among the first `k` ranked articles, else 0.0; None when there is no gold.

    >>> hit_at(["x", "a"], {"a"}, 1), hit_at(["x", "a"], {"a"}, 5), hit_at(["x"], set(), 5)
    (0.0, 1.0, None)
    """
    wanted = set(gold)
    if not wanted:
        return None
    return 1.0 if wanted & set(ranked[:k]) else 0.0


def mrr_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """Reciprocal rank of the first gold article within the first `k` (0.0 when none); None without gold.

    >>> mrr_at(["x", "y", "a"], {"a", "b"}, 10), mrr_at(["x", "y", "a"], {"a"}, 2)
    (0.3333333333333333, 0.0)
    """
    wanted = set(gold)
    if not wanted:
        return None
    rank = first_rank(ranked[:k], wanted)
    return 1.0 / rank if rank else 0.0


def ndcg_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """Normalised discounted cumulative gain at `k` with binary relevance (a gold article counts 1).

    DCG sums 1/log2(rank + 1) over the gold articles in the first `k`; the ideal DCG puts all gold
    articles first (at most `k` of them), so 1.0 means every gold article (or the first `k`) leads the
    list. None without gold.

    >>> round(ndcg_at(["x", "a"], {"a"}, 10), 4), ndcg_at(["a", "b"], {"a", "b"}, 10)
    (0.6309, 1.0)
    """
    wanted = set(gold)
    if not wanted:
        return None
    dcg = sum(1.0 / math.log2(rank + 1) for rank, article_id in enumerate(ranked[:k], start=1) if article_id in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return dcg / ideal


def recall_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """The share of the gold articles found among the first `k` ranked articles; None without gold.

    >>> recall_at(["a", "x"], {"a", "b"}, 5)
    0.5
    """
    wanted = set(gold)
    if not wanted:
        return None
    return len(wanted & set(ranked[:k])) / len(wanted)


# -- metrics: answers ------------------------------------------------------------------------------

_ASCII_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_MARKERS = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation, drop the articles a/an/the, squeeze spaces.

    Punctuation is removed, not replaced, as in SQuAD ("36,000" -> "36000", "St. Petersburg" -> "st
    petersburg"); Unicode punctuation (curly quotes, dashes) goes too, so typography does not count.

    >>> normalize_answer("The  Aurora-3 rocket!")
    'aurora3 rocket'
    """
    text = "".join(
        char
        for char in text.lower()
        if char not in _ASCII_PUNCTUATION and not unicodedata.category(char).startswith("P")
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_for_scoring(answer: Answer) -> str:
    """The answer text that answer metrics score: empty when the assistant abstained, `[n]` markers removed.

    An abstention's text ("the articles do not answer ...") is a refusal, not an answer, so it scores
    0 on an answerable question whatever words it contains.
    """
    return "" if answer.abstained else _MARKERS.sub(" ", answer.text)


def _alternatives(answers: Iterable[str]) -> list[str]:
    # An alternative that normalises to nothing ("The", "%") could match any text: it is ignored.
    return [normal for normal in (normalize_answer(answer) for answer in answers) if normal]


def contains_answer(text: str, answers: Iterable[str]) -> Metric:
    """1.0 when a normalised alternative occurs in the normalised `text` as whole tokens, else 0.0.

    Whole tokens: "12" is not found in "2012". None when there are no alternatives (unanswerable);
    0.0 when every alternative normalises to nothing.

    >>> contains_answer("It cost $4.82 billion [1].", ["$4.82 billion"]), contains_answer("In 2012.", ["12"])
    (1.0, 0.0)
    """
    answers = list(answers)
    if not answers:
        return None
    haystack = f" {normalize_answer(text)} "
    return 1.0 if any(f" {alternative} " in haystack for alternative in _alternatives(answers)) else 0.0


def exact_match(text: str, answers: Iterable[str]) -> Metric:
    """1.0 when the normalised `text` equals a normalised alternative, else 0.0; None without alternatives.

    >>> exact_match("The Aurora-3.", ["Aurora-3"])
    1.0
    """
    answers = list(answers)
    if not answers:
        return None
    normal = normalize_answer(text)
    return 1.0 if normal and normal in _alternatives(answers) else 0.0


def token_f1(text: str, answers: Iterable[str]) -> Metric:
    """SQuAD token F1 between the normalised `text` and the best-matching alternative; None without alternatives.

    Tokens are counted with multiplicity; an empty text scores 0.0 against any alternative (an empty
    alternative is ignored, as in `contains_answer`).

    >>> token_f1("Daniel Kiprono won", ["Kiprono"])
    0.5
    """
    answers = list(answers)
    if not answers:
        return None
    predicted = normalize_answer(text).split()
    best = 0.0
    for alternative in _alternatives(answers):
        expected = alternative.split()
        same = sum((Counter(predicted) & Counter(expected)).values())
        if same:
            precision, recall = same / len(predicted), same / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def citation_precision(citations: Sequence[Citation], gold: Iterable[str], answers: Iterable[str]) -> Metric:
    """The share of citations whose passage comes from a gold article or contains an expected answer.

    Gold here is `source_ids` (the issue's definition); a passage of a related article still counts when
    it holds the answer. None when the answer has no citations (an abstention, or nothing cited).

    >>> from assistant.models import Citation
    >>> cite = lambda article, passage: Citation(1, article, "", "", "", "", passage, "", 0, 0, None, 0.0)
    >>> citation_precision([cite("a", "x"), cite("b", "it was 87 km"), cite("c", "x")], {"a"}, ["87 km"])
    0.6666666666666666
    """
    if not citations:
        return None
    wanted, answers = set(gold), list(answers)
    good = sum(
        1 for c in citations if c.article_id in wanted or (answers and contains_answer(c.passage, answers) == 1.0)
    )
    return good / len(citations)


def verification_counts(answer: Answer) -> tuple[int, int]:
    """(flagged, total) answer sentences: flagged ones were marked unsupported (kept or removed).

    `answer.sentences` are the shown sentences, `answer.removed` the ones verification took out; a
    sentence listed in both counts once.
    """
    every = list(dict.fromkeys([*answer.sentences, *answer.removed]))
    flagged = sum(1 for sentence in every if sentence.unsupported or sentence in answer.removed)
    return flagged, len(every)


def abstain_scores(outcomes: Iterable[tuple[bool, bool]]) -> tuple[Metric, Metric]:
    """(precision, recall) of abstaining, from (unanswerable, abstained) pairs, one per question.

    Precision: of the questions the assistant abstained on, the share that were unanswerable (None
    when it never abstained). Recall: of the unanswerable questions, the share it abstained on (None
    when every question was answerable).

    >>> abstain_scores([(True, True), (True, False), (False, True), (False, False)])
    (0.5, 0.5)
    """
    pairs = list(outcomes)
    abstained = [unanswerable for unanswerable, did in pairs if did]
    unanswerable = [did for is_unanswerable, did in pairs if is_unanswerable]
    precision = sum(abstained) / len(abstained) if abstained else None
    recall = sum(unanswerable) / len(unanswerable) if unanswerable else None
    return precision, recall


def percentile(values: Iterable[float], q: float) -> Metric:
    """The `q`-th percentile (0..100) with linear interpolation between ranks (numpy's default); None if empty.

    >>> percentile([10, 20, 30, 40], 50), percentile([5], 95)
    (25.0, 5.0)
    """
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def mean(values: Iterable[Metric]) -> Metric:
    """The mean of the values that are not None; None when none is left.

    >>> mean([1.0, None, 0.0]), mean([None])
    (0.5, None)
    """
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None
