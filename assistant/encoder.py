"""The embedding model's forward pass in numpy, so answering a question never imports torch.

Importing sentence-transformers (torch, transformers) and loading the model through it takes seconds: a
cold `dossier ask` spent most of its time there to embed one question and a few dozen sentences. A BERT
sentence encoder is small arithmetic: token, position and segment embeddings, then per layer self-attention
and a feed-forward block, each followed by a residual layer norm, then the mean of the token vectors,
normalised. Read from the same safetensors file and tokenised by the same `tokenizers` file, the vectors equal
sentence-transformers' float32 ones within 1e-5 (tests/test_encoder.py checks it on real text).

Only what that description covers is accepted (`supports`): a BERT model with absolute positions, GELU, mean
pooling and normalisation, which is the bundled all-MiniLM-L6-v2. Anything else goes through
sentence-transformers, as does ingest, where torch's batched kernels pay for their import.

>>> encoder = NumpyEncoder.load(resolve_model_path(BUNDLED_MODEL))       # doctest: +SKIP
>>> encoder.encode(["Hamas reported 36,000 deaths"]).shape              # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BATCH_SIZE = 32


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def supports(path: Path) -> bool:
    """True when the folder holds a model this forward pass reproduces exactly."""
    config = _read_json(path / "config.json") or {}
    pooling = _read_json(path / "1_Pooling" / "config.json") or {}
    modules = [module.get("type", "") for module in _read_json(path / "modules.json") or []]
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and pooling.get("pooling_mode_mean_tokens") is True
        and not any(pooling.get(key) for key in ("pooling_mode_cls_token", "pooling_mode_max_tokens"))
        and modules
        == [
            "sentence_transformers.models.Transformer",
            "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize",
        ]
        and (path / "model.safetensors").is_file()
        and (path / "tokenizer.json").is_file()
    )


@dataclass(frozen=True)
class _Layer:
    query: tuple[np.ndarray, np.ndarray]
    key: tuple[np.ndarray, np.ndarray]
    value: tuple[np.ndarray, np.ndarray]
    attention_out: tuple[np.ndarray, np.ndarray]
    attention_norm: tuple[np.ndarray, np.ndarray]
    intermediate: tuple[np.ndarray, np.ndarray]
    output: tuple[np.ndarray, np.ndarray]
    output_norm: tuple[np.ndarray, np.ndarray]


class NumpyEncoder:
    """Unit-length sentence vectors from a BERT sentence-transformers folder, computed with numpy."""

    # Whether calls may run at once: numpy's BLAS already spreads one call over every core.
    parallel = False

    def __init__(self, tensors: dict[str, np.ndarray], config: dict[str, Any], tokenizer: Any) -> None:
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = tokenizer

        def linear(name: str) -> tuple[np.ndarray, np.ndarray]:
            return np.ascontiguousarray(tensors[f"{name}.weight"].T), tensors[f"{name}.bias"]

        def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
            return tensors[f"{name}.weight"], tensors[f"{name}.bias"]

        self.words = tensors["embeddings.word_embeddings.weight"]
        self.positions = tensors["embeddings.position_embeddings.weight"]
        self.segment = tensors["embeddings.token_type_embeddings.weight"][0]
        self.embedding_norm = norm("embeddings.LayerNorm")
        self.layers = [
            _Layer(
                query=linear(f"{prefix}.attention.self.query"),
                key=linear(f"{prefix}.attention.self.key"),
                value=linear(f"{prefix}.attention.self.value"),
                attention_out=linear(f"{prefix}.attention.output.dense"),
                attention_norm=norm(f"{prefix}.attention.output.LayerNorm"),
                intermediate=linear(f"{prefix}.intermediate.dense"),
                output=linear(f"{prefix}.output.dense"),
                output_norm=norm(f"{prefix}.output.LayerNorm"),
            )
            for prefix in (f"encoder.layer.{index}" for index in range(int(config["num_hidden_layers"])))
        ]

    @classmethod
    def load(cls, path: Path) -> NumpyEncoder:
        from safetensors.numpy import load_file

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        tensors = {name: array.astype(np.float32) for name, array in load_file(str(path / "model.safetensors")).items()}
        return cls(tensors, config, _tokenizer(path, config))

    @property
    def dimension(self) -> int:
        return int(self.words.shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Similar lengths share a batch, so little time goes to padding.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            out[rows] = self._encode_batch([texts[index] for index in rows])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.float32)
        hidden = self.words[ids] + self.positions[: ids.shape[1]] + self.segment
        hidden = self._norm(hidden, self.embedding_norm)
        blocked = (1.0 - mask)[:, None, None, :] * np.float32(np.finfo(np.float32).min)
        for layer in self.layers:
            hidden = self._layer(hidden, blocked, layer)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, hidden: np.ndarray, blocked: np.ndarray, layer: _Layer) -> np.ndarray:
        batch, length, width = hidden.shape
        size = width // self.heads

        flat = hidden.reshape(batch * length, width)  # two-dimensional products go to BLAS

        def heads(weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            return (flat @ weights[0] + weights[1]).reshape(batch, length, self.heads, size).transpose(0, 2, 1, 3)

        query, key, value = heads(layer.query), heads(layer.key), heads(layer.value)
        scores = query @ key.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + blocked
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, width)
        flat = self._norm(context @ layer.attention_out[0] + layer.attention_out[1] + flat, layer.attention_norm)
        inner = _gelu(flat @ layer.intermediate[0] + layer.intermediate[1])
        flat = self._norm(inner @ layer.output[0] + layer.output[1] + flat, layer.output_norm)
        return flat.reshape(batch, length, width)

    def _norm(self, hidden: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean = hidden.mean(axis=-1, keepdims=True)
        variance = ((hidden - mean) ** 2).mean(axis=-1, keepdims=True)
        return (hidden - mean) / np.sqrt(variance + self.eps) * weights[0] + weights[1]


def _tokenizer(path: Path, config: dict[str, Any]) -> Any:
    """The model's tokenizer, truncating where sentence-transformers does and padding a batch to its longest text."""
    from tokenizers import Tokenizer

    settings = _read_json(path / "sentence_bert_config.json") or {}
    max_length = min(int(settings.get("max_seq_length", 512)), int(config["max_position_embeddings"]))
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))
    return tokenizer


def _gelu(values: np.ndarray) -> np.ndarray:
    """BERT's exact GELU: x * Phi(x), with the error function from scipy."""
    from scipy.special import erf

    return (0.5 * values * (1.0 + erf(values * np.float32(1 / np.sqrt(2.0))))).astype(np.float32, copy=False)


# Bump when the graph `_graph` builds changes, so cached models of the old graph are not used.
GRAPH_VERSION = 1


class OnnxEncoder(NumpyEncoder):
    """The same forward pass run by ONNX Runtime: the same weights and the same operations, at about half the
    CPU time of numpy's (its kernels fuse the steps numpy runs one array at a time; one thread per call, so
    concurrent questions share the cores). The graph is built once from the weights with the `onnx` package
    and kept in `cache` (keyed by the weights file and `GRAPH_VERSION`); later processes load it from there.
    """

    session: Any  # onnxruntime.InferenceSession
    width: int  # the vectors' dimension
    parallel = True  # one thread per call (`load_onnx`): concurrent questions share the cores

    @classmethod
    def load_onnx(cls, path: Path, cache: Path) -> OnnxEncoder:
        import onnxruntime

        weights = path / "model.safetensors"
        stat = weights.stat()
        key = hashlib.sha256(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{GRAPH_VERSION}".encode())
        model = cache / f"encoder-{key.hexdigest()[:16]}.onnx"
        if not model.is_file():  # the weights are read only to build the graph; the session reads them from it
            cache.mkdir(parents=True, exist_ok=True)
            partial = model.with_name(f".{model.name}.{os.getpid()}")
            partial.write_bytes(_graph(NumpyEncoder.load(path)))
            partial.replace(model)  # another process never reads half a model
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception:
            model.unlink(missing_ok=True)  # damaged: the next process builds it again
            raise
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        encoder = cls.__new__(cls)  # none of NumpyEncoder's arrays: the session holds the weights
        encoder.tokenizer = _tokenizer(path, config)
        encoder.width = int(config["hidden_size"])
        encoder.session = session
        return encoder

    @property
    def dimension(self) -> int:
        return self.width

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.float32)
        blocked = ((1.0 - mask)[:, None, None, :] * np.float32(np.finfo(np.float32).min)).astype(np.float32)
        feeds = {"input_ids": ids, "position_ids": np.arange(ids.shape[1], dtype=np.int64), "mask_bias": blocked}
        hidden = self.session.run(None, feeds)[0]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _graph(encoder: NumpyEncoder) -> bytes:
    """`NumpyEncoder._encode_batch`'s arithmetic, up to the last layer's output, as a serialised ONNX model.

    It is long because it is one straight list of the operations, in the order `NumpyEncoder._layer` runs them,
    so the two can be read side by side.
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    weights: list[Any] = []

    def const(name: str, value: Any) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, inputs: list[str], output: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(kind, inputs, [output], **attributes))
        return output

    def norm(x: str, gain_bias: tuple[np.ndarray, np.ndarray], name: str) -> str:
        gain, bias = const(f"{name}.gain", gain_bias[0]), const(f"{name}.bias", gain_bias[1])
        return op("LayerNormalization", [x, gain, bias], name, axis=-1, epsilon=encoder.eps)

    width, heads = encoder.dimension, encoder.heads
    split = const("split_heads", np.array([0, 0, heads, width // heads], dtype=np.int64))
    join = const("join_heads", np.array([0, 0, width], dtype=np.int64))
    scale = const("scale", np.float32(1 / np.sqrt(width // heads)))
    half, one = const("half", np.float32(0.5)), const("one", np.float32(1.0))
    root_half = const("root_half", np.float32(1 / np.sqrt(2.0)))
    x = op("Gather", [const("words", encoder.words), "input_ids"], "tokens")
    x = op("Add", [x, op("Gather", [const("positions", encoder.positions), "position_ids"], "at")], "placed")
    x = norm(op("Add", [x, const("segment", encoder.segment)], "embedded"), encoder.embedding_norm, "embedding_norm")
    for index, layer in enumerate(encoder.layers):
        p = f"layer{index}."

        def linear(x: str, weight_bias: tuple[np.ndarray, np.ndarray], name: str, p: str = p) -> str:
            product = op("MatMul", [x, const(f"{p}{name}.weight", weight_bias[0])], f"{p}{name}.product")
            return op("Add", [product, const(f"{p}{name}.bias", weight_bias[1])], f"{p}{name}")

        def per_head(x: str, name: str, perm: list[int], p: str = p) -> str:
            return op("Transpose", [op("Reshape", [x, split], f"{p}{name}.split")], f"{p}{name}.heads", perm=perm)

        query = per_head(linear(x, layer.query, "query"), "query", [0, 2, 1, 3])
        key = per_head(linear(x, layer.key, "key"), "key", [0, 2, 3, 1])
        value = per_head(linear(x, layer.value, "value"), "value", [0, 2, 1, 3])
        scores = op("Mul", [op("MatMul", [query, key], f"{p}scores.raw"), scale], f"{p}scores.scaled")
        scores = op("Softmax", [op("Add", [scores, "mask_bias"], f"{p}scores.masked")], f"{p}scores", axis=-1)
        context = op(
            "Transpose", [op("MatMul", [scores, value], f"{p}context.heads")], f"{p}context.t", perm=[0, 2, 1, 3]
        )
        context = op("Reshape", [context, join], f"{p}context")
        attended = op("Add", [linear(context, layer.attention_out, "attention_out"), x], f"{p}attention.residual")
        attended = norm(attended, layer.attention_norm, f"{p}attention_norm")
        inner = linear(attended, layer.intermediate, "intermediate")
        erf = op("Erf", [op("Mul", [inner, root_half], f"{p}gelu.scaled")], f"{p}gelu.erf")
        halved = op("Mul", [op("Add", [erf, one], f"{p}gelu.plus"), half], f"{p}gelu.half")
        gelu = op("Mul", [inner, halved], f"{p}gelu")
        out = op("Add", [linear(gelu, layer.output, "output"), attended], f"{p}output.residual")
        x = norm(out, layer.output_norm, f"{p}output_norm")
    nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    graph = helper.make_graph(
        nodes,
        "sentence-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["length"]),
            helper.make_tensor_value_info("mask_bias", TensorProto.FLOAT, ["batch", 1, 1, "length"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", width])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())
