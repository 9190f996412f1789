"""The numpy and ONNX Runtime forward passes give the bundled model's vectors; answering never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant.embeddings import Embedder, resolve_model_path
from assistant.encoder import NumpyEncoder, OnnxEncoder, supports
from assistant.settings import BUNDLED_MODEL

TEXTS = [
    "What figures did Hamas report?",
    "The Hamas-run Gaza health ministry reported that more than 36,000 people had been killed.",
    "",
    "x",
    "Café, naïve, 東京 and Zürich: accents and other scripts.",
    # Longer than the model's 256 tokens: both sides must truncate alike.
    "The satellite weighs 1,200 kilograms and reached orbit on 19 March after lifting off. " * 30,
]


def test_numpy_vectors_equal_sentence_transformers_float32(embedder: Embedder) -> None:
    encoder = NumpyEncoder.load(resolve_model_path(BUNDLED_MODEL))

    ours = encoder.encode(TEXTS)
    theirs = embedder._model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)

    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # The batch a text shares does not change its vector (padding is masked out).
    assert np.abs(encoder.encode([TEXTS[1]])[0] - ours[1]).max() < 1e-5


def test_onnx_runtime_vectors_equal_sentence_transformers_float32(embedder: Embedder, tmp_path: Path) -> None:
    path = resolve_model_path(BUNDLED_MODEL)
    built = OnnxEncoder.load_onnx(path, tmp_path / "cache")  # builds the graph and keeps it
    [kept] = (tmp_path / "cache").iterdir()
    reloaded = OnnxEncoder.load_onnx(path, tmp_path / "cache")  # the kept graph, not built again

    theirs = embedder._model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    for encoder in (built, reloaded):
        ours = encoder.encode(TEXTS)
        assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
        assert np.abs(ours - theirs).max() < 1e-5
        assert np.abs(encoder.encode([TEXTS[1]])[0] - ours[1]).max() < 1e-5
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [kept.name]


def test_a_damaged_cached_graph_is_dropped_and_built_again(tmp_path: Path) -> None:
    path = resolve_model_path(BUNDLED_MODEL)
    first = OnnxEncoder.load_onnx(path, tmp_path).encode(TEXTS[:2])
    [kept] = tmp_path.iterdir()
    kept.write_bytes(b"half a model")

    with pytest.raises(Exception, match="(?i)protobuf|load|model"):
        OnnxEncoder.load_onnx(path, tmp_path)  # the Embedder then uses the numpy pass

    assert not kept.exists()
    assert np.abs(OnnxEncoder.load_onnx(path, tmp_path).encode(TEXTS[:2]) - first).max() < 1e-6


def test_questions_are_encoded_by_onnx_runtime_when_it_is_there() -> None:
    assert isinstance(Embedder()._numpy, OnnxEncoder)


def test_only_models_the_pass_reproduces_are_accepted(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(resolve_model_path(BUNDLED_MODEL), model)
    assert supports(model)

    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    assert not supports(model)  # CLS pooling: sentence-transformers must run it

    (model / "modules.json").write_text("not json")
    assert not supports(model)


def test_answering_a_question_from_the_cli_never_imports_torch(demo_copy: Path) -> None:
    script = (
        "import sys, json\n"
        "from assistant.cli import cli\n"
        "try:\n"
        f"    cli(['ask', '--store', {str(demo_copy)!r}, '--json', 'What figures did Hamas report?'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)

    assert "36,000" in json.loads(done.stdout)["text"], done.stderr
    assert done.stderr.strip().endswith("NO-TORCH"), done.stderr


def test_ingest_loads_torch_and_then_questions_use_it(embedder: Embedder) -> None:
    fresh = Embedder()
    assert fresh.dimension == 384
    before = fresh.encode(["When did Kestrel-1 launch?"])
    fresh.encode(["A chunk of an article."], bulk=True)

    assert fresh._torch is not None
    assert np.abs(fresh.encode(["When did Kestrel-1 launch?"]) - before).max() < 1e-5


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_bfloat16_goes_through_torch(dtype: str) -> None:
    assert Embedder(dtype=dtype)._numpy is None


OFFLINE_LOAD = """
import json, os, socket
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("no network in this test")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
from assistant.embeddings import _load
from assistant.settings import BUNDLED_MODEL
_load(BUNDLED_MODEL, "float32")
print(json.dumps({"attempts": attempts, "env": [k for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if k in os.environ]}))
"""


def test_the_torch_model_loads_offline_without_touching_the_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")  # nothing cached: the local folder alone must do
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", OFFLINE_LOAD], capture_output=True, text=True, timeout=300, env=env)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"attempts": [], "env": []}
