"""The examples in the docstrings of the pure modules run, and say what they print.

Pure here: their examples need no store, no embedding model and no network (the modules that open a
store or load a model mark such examples `# doctest: +SKIP`). `make test` runs them with the rest.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

PURE_MODULES = [
    "assistant.access",
    "assistant.chain",
    "assistant.dates",
    "assistant.evaluation.metrics",
    "assistant.filters",
    "assistant.library",
    "assistant.question",
    "assistant.rarity",
    "assistant.reader",
    "assistant.retrieval",
    "assistant.settings",
    "assistant.store",
    "assistant.text",
    "assistant.word_vectors",
    "ingest.loaders",
]


@pytest.mark.parametrize("name", PURE_MODULES)
def test_the_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for test in finder.find(module, name):
        runner.run(test)
        examples += len([example for example in test.examples if not example.options.get(doctest.SKIP)])
    results = runner.summarize(verbose=False)
    assert examples, f"{name} has no example that runs: take it off PURE_MODULES or give it one"
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed (printed above)"
