"""Fit the extractive reader's weights on the dev question sets, with cross-validation by question.

    .venv/bin/python bench/fit_reader.py \\
        --set realtimeqa-dev=/tmp/rtqa --set realtimeqa-abstain-dev=/tmp/rtqa-abstain --set squad2-dev=/tmp/squad2

Each `--set NAME=STORE` reads `../shared/eval/NAME/questions.jsonl` and a store that holds that set's
articles (`dossier ingest ../shared/eval/NAME/articles.jsonl --store STORE`); NAME may also be a questions
file of our own, e.g. `--set examples/questions-natural.jsonl=DEMO_STORE` (the demo articles ingested). For every question the
real chain retrieves the passages (with the question's `asked_on` as today) and the reader describes
every sentence of them (`assistant.reader.SentenceFeatures`); a sentence's label is whether it contains
an expected answer (`assistant.evaluation.metrics.contains_answer`). A logistic model is fitted by L-BFGS-B with an L2
penalty, with the features that measure coverage of the question held non-negative and those that
measure what is missing held non-positive (so more coverage never lowers a sentence's probability).

The numbers printed (and written with `--report`) are out-of-fold: five folds grouped by question
text (a question asked in two sets sits in one fold), each fold's model and abstention threshold fitted
on the other four, and the held-out questions answered by the real `ExtractiveAnswerer` with that model.
The shipped weights (`--out`, default assistant/reader_weights.json) are then fitted on all questions.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from assistant.answer import SHORTLIST, Candidate, ExtractiveAnswerer
from assistant.chain import Assistant
from assistant.evaluation.metrics import contains_answer
from assistant.evaluation.questions import load_questions
from assistant.question import Question
from assistant.reader import WEIGHTS_FILE, ReaderModel, SentenceFeatures, with_meaning
from assistant.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "eval"
FOLDS = 5
L2 = 1.0  # penalty on the standardised weights (the bias is free)
EXTRA_RATIO = (
    0.5  # a second sentence must come this close to the best one's probability (0.35, 0.5, 0.7, 0.85 measured)
)
# Signs the fit must respect: meaning, coverage of the question, retrieval's rank and score and agreement with
# the question's time can only help; what is missing can only hurt. (Unbounded, correlated features can
# otherwise take opposite signs that cancel, which no reader of the weights could make sense of.)
NON_NEGATIVE = frozenset(
    {
        "semantic",
        "semantic_gap",
        "retrieval_score",
        "retrieval_rank",
        "in_window",
        "recency",
        "coverage",
        "coverage_gap",
        "word_match",
        "word_match_gap",
        "context_coverage",
        "passage_coverage",
        "subject_coverage",
        "relation_coverage",
        "title_coverage",
    }
)
NON_POSITIVE = frozenset({"subject_missing", "heaviest_missing", "heaviest_missing_near", "numbers_missing"})
# The abstention threshold answers at least this share of the answerable questions it is fitted on.
ANSWERED_FLOOR = 0.9
NAMES = SentenceFeatures.field_names()
CACHED_PASSAGES = 10


@dataclass
class Item:
    """One question of one set, with its analysed form and its scored candidate sentences."""

    dataset: str
    id: str
    text: str
    answers: tuple[str, ...]
    question: Question
    candidates: list[Candidate]

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def zero_model() -> ReaderModel:
    zeros = dict.fromkeys(NAMES, 0.0)
    return ReaderModel(zeros, zeros, dict.fromkeys(NAMES, 1.0), 0.0, 0.0, EXTRA_RATIO, {})


def pooled_semantic(embedder: Any, passages: list[Any], candidates: list[Candidate], query: np.ndarray) -> list[float]:
    """Each candidate's similarity to the question from the chunk's own forward pass (the ingest-time option).

    The chunk is encoded as ingest encodes it (title and date header, then the text); a sentence's vector is
    the mean of the model's token embeddings over the sentence's characters. A sentence past the model's
    token window gets 0.
    """
    model = embedder._model
    headers = [p.title + (f" ({p.published})" if p.published else "") for p in passages]
    texts = [f"{header}\n{p.text}" if header else p.text for header, p in zip(headers, passages, strict=True)]
    outputs = model.encode(texts, output_value="token_embeddings", convert_to_numpy=False)
    encoded = model.tokenizer(texts, return_offsets_mapping=True, truncation=True, max_length=model.max_seq_length)
    similarities = []
    for candidate in candidates:
        i = candidate.passage_rank
        shift = len(texts[i]) - len(passages[i].text)
        low, high = candidate.start + shift, candidate.end + shift
        inside = [t for t, (a, b) in enumerate(encoded["offset_mapping"][i]) if b > a and a >= low and b <= high]
        if not inside:
            similarities.append(0.0)
            continue
        vector = outputs[i][inside].mean(0).float().numpy()
        similarities.append(float(vector @ query / (np.linalg.norm(vector) or 1.0)))
    return similarities


def collect(name: str, store: Path, limit: int | None, meaning: str = "query", cache: Path | None = None) -> list[Item]:
    """Every question of set `name`, retrieved against `store` and described by the reader.

    With `cache`, each question's retrieved passages and the sentence vectors are kept there (keyed by the
    set and store), so a change to the features alone is measured again in seconds.
    """
    source = Path(name) if name.endswith(".jsonl") else SHARED / name / "questions.jsonl"
    name = source.stem if name.endswith(".jsonl") else name
    questions = load_questions(source).questions[:limit]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as weights:
        json.dump(zero_model().to_json(), weights)  # the features do not depend on the weights
    assistant = Assistant.from_settings(Settings(store=store, chroma_url="", reader_weights=weights.name))
    assistant.extractive.shortlist = None  # every sentence encoded: the shortlist depends on the weights fitted here
    embedder = assistant.store.embedder
    saved: dict[str, Any] = {"passages": {}, "vectors": {}}
    where = cache / f"{name}-{store.name}-{CACHED_PASSAGES}.pickle" if cache else None
    if where and where.exists():
        saved = pickle.loads(where.read_bytes())
        embedder._sentences.update(saved["vectors"])
    assistant.retriever.lexical.refresh()
    items = []
    for q in questions:
        turn = assistant._condense(assistant._start(q.question, None, None, None, q.asked_on))
        if q.id not in saved["passages"]:
            saved["passages"][q.id] = assistant._retrieve(turn).retrieved[:CACHED_PASSAGES]
        context = saved["passages"][q.id][: assistant.settings.k]
        analysed = turn.analysed
        assert analysed is not None
        vector = embedder.encode_query(analysed.text)
        candidates = assistant.extractive.rank_sentences(analysed, context, vector)
        if meaning == "pooled" and candidates:
            pooled = pooled_semantic(embedder, context, candidates, vector)
            best = max(pooled)
            candidates = [
                replace(c, features=replace(c.features, semantic=p, semantic_gap=p - best))
                for c, p in zip(candidates, pooled, strict=True)
                if c.features
            ]
        items.append(Item(name, q.id, q.question, q.answers, analysed, candidates))
    if where:
        saved["vectors"] = dict(embedder._sentences)
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(pickle.dumps(saved))
    return items


def matrix(items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for item in items:
        for candidate in item.candidates:
            assert candidate.features is not None
            rows.append(candidate.features.values())
            labels.append(1.0 if item.answerable and contains_answer(candidate.text, item.answers) else 0.0)
    return np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.float64)


def informative(item: Item) -> bool:
    """Whether an item's labels say anything: an answerable question none of whose sentences holds the answer
    as written (retrieval missed it, or the answer is a paraphrase like "They got married") would teach the
    model that a right-looking sentence is wrong."""
    return not item.answerable or any(contains_answer(c.text, item.answers) for c in item.candidates)


def fit(
    items: list[Item],
    threshold: float | None = None,
    provenance: dict[str, Any] | None = None,
    extra_ratio: float = EXTRA_RATIO,
    objective: str = "pointwise",
    answered_floor: float = ANSWERED_FLOOR,
    focus: int | None = None,
) -> ReaderModel:
    """A model fitted on the sentences of `items` whose labels are informative; the abstention threshold is
    chosen on all of `items`.

    `pointwise`: one logistic regression over all sentences. `listwise`: the weights are fitted to pick, in
    each answerable question, a sentence that holds the answer among that question's candidates (softmax over
    the candidates), then scaled and shifted (Platt) so that the score is a calibrated probability.
    """
    if focus:
        # Fit once on every sentence, then again on only the sentences that model would shortlist: the ones
        # the answerer compares at question time, where telling the answer from a near miss is what counts.
        first = fit(items, threshold, provenance, extra_ratio, objective, answered_floor)
        focused = [replace(item, candidates=shortlisted(first, item.candidates, focus)) for item in items]
        return fit(focused, threshold, provenance, extra_ratio, objective, answered_floor)
    kept = [item for item in items if informative(item)]
    x, y = matrix(kept)
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales < 1e-9] = 1.0
    z = (x - means) / scales
    bounds = [(None, None)] + [
        (0.0, None) if name in NON_NEGATIVE else (None, 0.0) if name in NON_POSITIVE else (None, None) for name in NAMES
    ]
    if objective == "listwise":
        groups = _groups(kept)
        ranking = minimize(
            _listwise_loss, np.zeros(len(NAMES)), args=(z, y, groups), jac=True, method="L-BFGS-B", bounds=bounds[1:]
        )
        score = z @ ranking.x
        platt = minimize(_logistic_loss, np.zeros(2), args=(score[:, None], y, 0.0), jac=True, method="L-BFGS-B")
        bias, weights = float(platt.x[0]), platt.x[1] * ranking.x
    else:
        result = minimize(
            _logistic_loss, np.zeros(len(NAMES) + 1), args=(z, y, L2), jac=True, method="L-BFGS-B", bounds=bounds
        )
        bias, weights = float(result.x[0]), result.x[1:]
    model = ReaderModel(
        weights=dict(zip(NAMES, (float(w) for w in weights), strict=True)),
        means=dict(zip(NAMES, (float(m) for m in means), strict=True)),
        scales=dict(zip(NAMES, (float(s) for s in scales), strict=True)),
        bias=bias,
        threshold=0.0,
        extra_ratio=extra_ratio,
        provenance=provenance or {},
    )
    chosen = threshold if threshold is not None else choose_threshold(model, items, answered_floor)
    return replace(model, threshold=chosen)


def _logistic_loss(params: np.ndarray, z: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Cross-entropy of a logistic model (params: bias, then one weight per column of z), L2 on the weights."""
    bias, weights = params[0], params[1:]
    p = 1.0 / (1.0 + np.exp(-np.clip(bias + z @ weights, -50, 50)))
    eps = 1e-12
    value = -np.sum(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)) + 0.5 * l2 * weights @ weights
    return float(value), np.concatenate([[np.sum(p - y)], z.T @ (p - y) + l2 * weights])


def _groups(items: list[Item]) -> list[tuple[int, int]]:
    """(start, end) rows in `matrix(items)` of each answerable question with at least one answer sentence."""
    spans, start = [], 0
    for item in items:
        end = start + len(item.candidates)
        if item.answerable and end > start:
            spans.append((start, end))
        start = end
    return spans


def _listwise_loss(
    weights: np.ndarray, z: np.ndarray, y: np.ndarray, groups: list[tuple[int, int]]
) -> tuple[float, np.ndarray]:
    """Minus the log of the softmax share that each question's answer sentences get among its candidates."""
    scores = z @ weights
    value, gradient = 0.5 * L2 * weights @ weights, L2 * weights.copy()
    for start, end in groups:
        s, labels = scores[start:end], y[start:end]
        if not labels.any():
            continue
        p = np.exp(s - s.max())
        p /= p.sum()
        positive = p * labels / (p @ labels)
        value -= float(np.log(p @ labels))
        gradient += z[start:end].T @ (p - positive)
    return float(value), gradient


def best_probabilities(model: ReaderModel, items: list[Item]) -> list[float]:
    return [max((model.probability(c.features) for c in item.candidates if c.features), default=0.0) for item in items]


def choose_threshold(model: ReaderModel, items: list[Item], answered_floor: float = ANSWERED_FLOOR) -> float:
    """The highest threshold that still answers `answered_floor` of the answerable questions (declines the most)."""
    best = best_probabilities(model, items)
    answerable = np.array([p for p, item in zip(best, items, strict=True) if item.answerable])
    return float(np.quantile(answerable, 1.0 - answered_floor, method="lower")) if len(answerable) else 0.5


def shortlisted(model: ReaderModel, candidates: list[Candidate], size: int) -> list[Candidate]:
    """The `size` candidates `model` encodes (`ReaderModel.shortlist`), their meaning gaps taken among them."""
    described = [c for c in candidates if c.features]
    described = [described[i] for i in model.shortlist([c.features for c in described], size)]
    regapped = with_meaning([c.features for c in described], [c.features.semantic for c in described])
    return [replace(c, features=f) for c, f in zip(described, regapped, strict=True)]


def answer_items(model: ReaderModel, items: list[Item], shortlist: int | None = SHORTLIST) -> list[dict[str, Any]]:
    """What the real answerer does with `model` on each item: answered or not, and whether it holds the answer.

    As the answerer does, only the `shortlist` candidates likeliest by everything but meaning are considered.
    """
    answerer = ExtractiveAnswerer(model=model)
    outcomes = []
    for item in items:
        described = shortlisted(model, item.candidates, shortlist) if shortlist else item.candidates
        rescored = [replace(c, probability=model.probability(c.features)) for c in described if c.features]
        rescored.sort(key=lambda c: (-c.probability, c.passage_rank, c.start))
        draft = answerer.draft(item.question, rescored)
        text = " ".join(piece for piece, _ in draft.pieces or ())
        outcomes.append(
            {
                "dataset": item.dataset,
                "id": item.id,
                "answerable": item.answerable,
                "answered": not draft.abstained,
                "contains": bool(item.answerable and not draft.abstained and contains_answer(text, item.answers)),
                "top1": bool(item.answerable and rescored and contains_answer(rescored[0].text, item.answers)),
                "confidence": draft.confidence,
                "sentences": len(draft.pieces or ()),
            }
        )
    return outcomes


def folds(items: list[Item]) -> list[int]:
    """A fold per item, grouped by question text, assigned round-robin over the texts' sorted order."""
    texts = sorted({item.text.strip().lower() for item in items})
    fold_of = {text: i % FOLDS for i, text in enumerate(texts)}
    return [fold_of[item.text.strip().lower()] for item in items]


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    table: dict[str, dict[str, float | None]] = {}
    for dataset in dict.fromkeys(o["dataset"] for o in outcomes):
        rows = [o for o in outcomes if o["dataset"] == dataset]
        answerable = [o for o in rows if o["answerable"]]
        unanswerable = [o for o in rows if not o["answerable"]]
        table[dataset] = {
            "questions": len(rows),
            "answer_contains": _mean(o["contains"] for o in answerable),
            "top_sentence_contains": _mean(o["top1"] for o in answerable),
            "answered_answerable": _mean(o["answered"] for o in answerable),
            "declined_unanswerable": _mean(not o["answered"] for o in unanswerable),
            "sentences_per_answer": _mean(o["sentences"] for o in rows if o["answered"]),
        }
    return table


def calibration(pairs: list[tuple[float, bool]], bins: int = 10) -> list[dict[str, float]]:
    """Predicted vs observed in equal-width probability bins."""
    rows = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(p, y) for p, y in pairs if low <= p < high or (b == bins - 1 and p == 1.0)]
        if inside:
            rows.append(
                {
                    "bin": f"{low:.1f}-{high:.1f}",
                    "n": len(inside),
                    "predicted": round(float(np.mean([p for p, _ in inside])), 3),
                    "observed": round(float(np.mean([y for _, y in inside])), 3),
                }
            )
    return rows


def _mean(values: Any) -> float | None:
    values = [float(v) for v in values]
    return round(sum(values) / len(values), 3) if values else None


def options(args: argparse.Namespace) -> list[str]:
    """The options that shape the fitted weights, as a command line (not where files go)."""
    shaping = [f"--set {spec}" for spec in args.set]
    defaults = {"objective": "pointwise", "shortlist": SHORTLIST, "focus": 0, "answered_floor": ANSWERED_FLOOR}
    defaults |= {"extra_ratio": EXTRA_RATIO, "meaning": "query"}
    for name, default in defaults.items():
        if getattr(args, name) != default:
            shaping.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    return shaping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", required=True, help="NAME=STORE (repeat for each dev set)")
    parser.add_argument("--out", type=Path, default=ROOT / "assistant" / WEIGHTS_FILE, help="weights file to write")
    parser.add_argument("--report", type=Path, default=None, help="write the cross-validated numbers as JSON here")
    parser.add_argument("--extra-ratio", type=float, default=EXTRA_RATIO, help="see ReaderModel.extra_ratio")
    parser.add_argument("--cache", type=Path, default=None, help="keep retrieved passages and vectors here")
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each set (quick runs)")
    parser.add_argument(
        "--meaning",
        choices=["query", "pooled"],
        default="query",
        help="sentence vectors encoded at question time (what Dossier does) or pooled from the chunk's ingest pass",
    )
    parser.add_argument(
        "--objective",
        choices=["pointwise", "listwise"],
        default="pointwise",
        help="how the weights are fitted (see fit)",
    )
    parser.add_argument(
        "--shortlist",
        type=int,
        default=SHORTLIST,
        help="candidates encoded per question, the likeliest by everything but meaning (0: all)",
    )
    parser.add_argument(
        "--answered-floor",
        type=float,
        default=ANSWERED_FLOOR,
        help="the abstention threshold answers at least this share of the answerable questions fitted on",
    )
    parser.add_argument(
        "--focus",
        type=int,
        default=0,
        help="fit again on each question's N shortlisted candidates only (0: fit on every sentence)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    items: list[Item] = []
    for spec in args.set:
        name, _, store = spec.partition("=")
        print(f"{name}: retrieving and describing sentences ...", file=sys.stderr)
        items += collect(name, Path(store), args.limit, args.meaning, args.cache)
    fold_of = folds(items)

    outcomes: list[dict[str, Any]] = []
    sentence_pairs: list[tuple[float, bool]] = []
    best_pairs: list[tuple[float, bool]] = []
    for fold in range(FOLDS):
        train = [item for item, f in zip(items, fold_of, strict=True) if f != fold]
        test = [item for item, f in zip(items, fold_of, strict=True) if f == fold]
        model = fit(
            train,
            extra_ratio=args.extra_ratio,
            objective=args.objective,
            answered_floor=args.answered_floor,
            focus=args.focus or None,
        )
        outcomes += answer_items(model, test, args.shortlist or None)
        for item in test:
            scored = [(model.probability(c.features), c) for c in item.candidates if c.features]
            for p, c in scored:
                sentence_pairs.append((p, bool(item.answerable and contains_answer(c.text, item.answers))))
            if scored:
                p, c = max(scored, key=lambda pair: pair[0])
                best_pairs.append((p, bool(item.answerable and contains_answer(c.text, item.answers))))

    cross_validated = summarise(outcomes)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    provenance = {
        "script": "bench/fit_reader.py",
        "command": "bench/fit_reader.py " + " ".join(options(args)),
        "data": [spec.partition("=")[0] for spec in args.set],
        "questions": len(items),
        "sentences": sum(len(item.candidates) for item in items),
        "label": "the sentence contains an expected answer (assistant.evaluation.metrics.contains_answer)",
        "fitted_on": date.today().isoformat(),
        "commit": commit.strip(),
        "cross_validated": cross_validated,
        "threshold_rule": f"the highest that answers {args.answered_floor:.0%} of the answerable questions fitted on",
    }
    final = fit(
        items,
        provenance=provenance,
        extra_ratio=args.extra_ratio,
        objective=args.objective,
        answered_floor=args.answered_floor,
        focus=args.focus or None,
    )
    args.out.write_text(json.dumps(final.to_json(), indent=2) + "\n", encoding="utf-8")

    report = {
        "cross_validated": cross_validated,
        "calibration_sentences": calibration(sentence_pairs),
        "calibration_best_sentence": calibration(best_pairs),
        "threshold": final.threshold,
        "weights": {name: round(final.weights[name], 3) for name in NAMES},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
