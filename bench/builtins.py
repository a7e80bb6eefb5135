"""Built-in registry entries, lazy so that listing them imports no model code."""

from bench.recipes import discover
from bench.registry import register, register_lazy

METHODS = {
    "pop": ("methods.pop:Pop", "Most popular items first (training counts); the floor any method must clear"),
    "knn-last": ("methods.knn:LastItemKNN", "Last-item kNN: cosine neighbours of the latest item in an encoder's vectors"),
    "sasrec": ("methods.sasrec:SASRec", "SASRec, full-softmax cross-entropy over all items"),
    "sasrec-bce": ("methods.sasrec:SASRecBCE", "SASRec as in the paper: BCE with one sampled negative"),
    "sasrec-star": ("methods.sasrec:SASRecStar", "SASRec*: ID embedding + structured item-field embeddings"),
    "bert4rec": ("methods.bert4rec:BERT4Rec", "BERT4Rec: bidirectional cloze training, predicts an appended [MASK]"),
    "s3rec": ("methods.s3rec:S3Rec", "S3-Rec: AAP/MIP/MAP/SP self-supervised pre-training, then SASRec-BCE"),
    "tiger": ("methods.sid:Tiger", "TIGER: text embedding + RQ-VAE (3 x 256) + T5-style generator"),
    "rqkmeans-t5": ("methods.sid:RQKMeansT5", "Text embedding + residual k-means + T5-style generator"),
    "hkmeans-t5": ("methods.sid:HKMeansT5", "Text embedding + hierarchical k-means + T5-style generator"),
    "lsh-t5": ("methods.sid:LSHT5", "Text embedding + random-hyperplane LSH + T5-style generator"),
    "random-t5": ("methods.sid:RandomT5", "Random unique IDs + T5-style generator (TIGER's ablation floor)"),
    "precomputed-t5": ("methods.sid:PrecomputedT5", "SIDs from an index file (tok_index / tok_path) + T5-style generator"),
    "resid": ("methods.sid:ReSID", "ReSID: FAMAE field embeddings + GAOQ + the generator at ReSID's sizes"),
}
READERS = {
    "s3rec": ("bench.readers:read_s3rec", "S3-Rec text format (sequences + item2attributes), optional item text"),
    "lcrec": ("bench.readers:read_lcrec", "LC-Rec JSON format (X.inter.json + X.item.json)"),
    "synthetic": ("bench.synthetic:read_synthetic", "Embedded deterministic synthetic generator"),
}
TOKENIZERS: dict[str, tuple[str, str]] = {
    "rqkmeans": ("methods.tokenizers:RQKMeans", "Residual k-means: each level clusters the residuals of the last"),
    "hkmeans": ("methods.tokenizers:HKMeans", "Hierarchical k-means: clusters split again, children numbered locally"),
    "lsh": ("methods.tokenizers:LSH", "Random-hyperplane LSH: sign bits of seeded random projections per level"),
    "random": ("methods.tokenizers:RandomIDs", "Random unique SIDs, ignoring the item vectors (TIGER's ablation floor)"),
    "precomputed": ("methods.tokenizers:Precomputed", "SIDs read from an LC-Rec style index (named or a JSON file)"),
    "rqvae": ("methods.rqvae:RQVAE", "TIGER's RQ-VAE: MLP autoencoder + residual quantisation, dead-code restarts"),
    "gaoq": ("methods.gaoq:GAOQ", "ReSID's GAOQ: balanced k-means, children matched to shared anchors (no training)"),
}
ENCODERS = {
    "text-tfidf": ("methods.encoders:TextTfidf", "TF-IDF + truncated SVD of the item text (no model weights)"),
    "text-st": ("methods.encoders:TextST", "sentence-transformers embedding of the item text (extra: text)"),
    "none": ("methods.encoders:NoVectors", "no item vectors, for tokenizers that read none (random, precomputed)"),
    "famae": ("methods.famae:FAMAE", "ReSID's field-aware masked auto-encoder: concatenated field embeddings"),
    "sasrec-emb": ("methods.sasrec_emb:SASRecEmb", "item-embedding table of a SASRec trained on the training sequences"),
}

for kind, table in (("method", METHODS), ("reader", READERS), ("tokenizer", TOKENIZERS), ("encoder", ENCODERS)):
    for name, (target, description) in table.items():
        register_lazy(kind, name, target, description)

for recipe in discover().values():
    register("dataset", recipe.name, recipe.description)(recipe)
