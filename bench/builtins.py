"""Built-in registry entries, lazy so that listing them imports no model code."""

from bench.core.registry import register, register_lazy
from bench.data.recipes import discover

METHODS = {
    "pop": ("methods.id.pop:Pop", "Most popular items first (training counts); the floor any method must clear"),
    "knn-last": ("methods.sid.knn_last:LastItemKNN", "Last-item kNN: cosine neighbours of the latest item in an encoder's vectors"),
    "sasrec": ("methods.id.sasrec:SASRec", "SASRec, full-softmax cross-entropy over all items"),
    "sasrec-bce": ("methods.id.sasrec:SASRecBCE", "SASRec as in the paper: BCE with one sampled negative"),
    "sasrec-star": ("methods.id.sasrec:SASRecStar", "SASRec*: ID embedding + structured item-field embeddings"),
    "bert4rec": ("methods.id.bert4rec:BERT4Rec", "BERT4Rec: bidirectional cloze training, predicts an appended [MASK]"),
    "s3rec": ("methods.id.s3rec:S3Rec", "S3-Rec: AAP/MIP/MAP/SP self-supervised pre-training, then SASRec-BCE"),
    "tiger": ("methods.sid.tiger:Tiger", "TIGER: text embedding + RQ-VAE (3 x 256) + T5-style generator"),
    "rqkmeans-t5": ("methods.sid.text_baselines:RQKMeansT5", "Text embedding + residual k-means + T5-style generator"),
    "hkmeans-t5": ("methods.sid.text_baselines:HKMeansT5", "Text embedding + hierarchical k-means + T5-style generator"),
    "lsh-t5": ("methods.sid.text_baselines:LSHT5", "Text embedding + random-hyperplane LSH + T5-style generator"),
    "random-t5": ("methods.sid.text_baselines:RandomT5", "Random unique IDs + T5-style generator (TIGER's ablation floor)"),
    "precomputed-t5": ("methods.sid.text_baselines:PrecomputedT5", "SIDs from an index file (tok_index / tok_path) + T5-style generator"),
    "tiger-hybrid": ("methods.sid.tiger:TigerHybrid", "TIGER with the unified model's hybrid quantiser distances (cosine, cosine, l2)"),
    "unified": ("methods.sid.unified:Unified", "Unified semantic+ID SASRec: [8-d ID || 64-d quantised text vector], trained jointly"),
    "unified-id-only": ("methods.sid.unified:UnifiedIdOnly", "Unified's ablation: ID only, SASRec at the same width (72)"),
    "unified-sem-only": ("methods.sid.unified:UnifiedSemOnly", "Unified's ablation: the quantised semantic vector only (64-d)"),
    "unified-l2": ("methods.sid.unified:UnifiedL2", "Unified's ablation: Euclidean distance on every quantiser level"),
    "unified-cosine": ("methods.sid.unified:UnifiedCosine", "Unified's ablation: cosine distance on every quantiser level"),
    "unified-two-stage": ("methods.sid.unified:UnifiedTwoStage", "Unified's ablation: quantiser fitted first, then frozen"),
    "letter": ("methods.sid.letter:Letter", "LETTER: text + RQ-VAE with collaborative and diversity losses + T5-style generator"),
    "letter-rank": ("methods.sid.letter:LetterRank", "LETTER with the ranking-guided generation loss (tau 0.8)"),
    "letter-native": ("methods.sid.letter:LetterNative", "LETTER's released Beauty SIDs (letter_native index) + T5-style generator"),
    "etegrec": ("methods.sid.etegrec:ETEGRec", "ETEGRec: sasrec-emb (256-d) + RQ-VAE trained in alternation with a T5 generator (SIA + PSA), then fine-tuned"),
    "etegrec-no-sia": ("methods.sid.etegrec:ETEGRecNoSIA", "ETEGRec's ablation: without the SIA loss"),
    "etegrec-no-psa": ("methods.sid.etegrec:ETEGRecNoPSA", "ETEGRec's ablation: without the PSA loss"),
    "etegrec-no-align": ("methods.sid.etegrec:ETEGRecNoAlign", "ETEGRec's ablation: without SIA and PSA"),
    "etegrec-joint": ("methods.sid.etegrec:ETEGRecJoint", "ETEGRec's ablation: no alternation, everything trained jointly"),
    "etegrec-two-stage": ("methods.sid.etegrec:ETEGRecTwoStage", "ETEGRec's ablation w/o end-to-end: the final tokens, a fresh generator trained two-stage"),
    "resid": ("methods.sid.resid:ReSID", "ReSID: FAMAE field embeddings + GAOQ + the generator at ReSID's sizes"),
}
READERS = {
    "s3rec": ("bench.data.readers:read_s3rec", "S3-Rec text format (sequences + item2attributes), optional item text"),
    "lcrec": ("bench.data.readers:read_lcrec", "LC-Rec JSON format (X.inter.json + X.item.json)"),
    "synthetic": ("bench.data.synthetic:read_synthetic", "Embedded deterministic synthetic generator"),
}
TOKENIZERS: dict[str, tuple[str, str]] = {
    "rqkmeans": ("methods.tokenizers.rqkmeans:RQKMeans", "Residual k-means: each level clusters the residuals of the last"),
    "hkmeans": ("methods.tokenizers.hkmeans:HKMeans", "Hierarchical k-means: clusters split again, children numbered locally"),
    "lsh": ("methods.tokenizers.lsh:LSH", "Random-hyperplane LSH: sign bits of seeded random projections per level"),
    "random": ("methods.tokenizers.random_ids:RandomIDs", "Random unique SIDs, ignoring the item vectors (TIGER's ablation floor)"),
    "precomputed": ("methods.tokenizers.precomputed:Precomputed", "SIDs read from an LC-Rec style index (named or a JSON file)"),
    "rqvae": ("methods.tokenizers.rqvae:RQVAE", "TIGER's RQ-VAE: MLP autoencoder + residual quantisation, dead-code restarts"),
    "letter": ("methods.tokenizers.letter:Letter", "LETTER: RQ-VAE (4 x 256, Sinkhorn last level) + collaborative and diversity losses"),
    "gaoq": ("methods.tokenizers.gaoq:GAOQ", "ReSID's GAOQ: balanced k-means, children matched to shared anchors (no training)"),
}
ENCODERS = {
    "text-tfidf": ("methods.encoders.text:TextTfidf", "TF-IDF + truncated SVD of the item text (no model weights)"),
    "text-st": ("methods.encoders.text:TextST", "sentence-transformers embedding of the item text (extra: text)"),
    "none": ("methods.encoders.text:NoVectors", "no item vectors, for tokenizers that read none (random, precomputed)"),
    "famae": ("methods.encoders.famae:FAMAE", "ReSID's field-aware masked auto-encoder: concatenated field embeddings"),
    "sasrec-emb": ("methods.encoders.sasrec_emb:SASRecEmb", "item-embedding table of a SASRec trained on the training sequences"),
    "bert4rec-emb": ("methods.encoders.sasrec_emb:BERT4RecEmb", "item-embedding table of a BERT4Rec trained on the training sequences (ReSID's E3)"),
}

for kind, table in (("method", METHODS), ("reader", READERS), ("tokenizer", TOKENIZERS), ("encoder", ENCODERS)):
    for name, (target, description) in table.items():
        register_lazy(kind, name, target, description)

for recipe in discover().values():
    register("dataset", recipe.name, recipe.description)(recipe)
