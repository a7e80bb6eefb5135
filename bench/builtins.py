"""Built-in registry entries, lazy so that listing them imports no model code."""

from bench.recipes import discover
from bench.registry import register, register_lazy

METHODS = {
    "pop": ("methods.pop:Pop", "Most popular items first (training counts); the floor any method must clear"),
    "sasrec": ("methods.sasrec:SASRec", "SASRec, full-softmax cross-entropy over all items"),
    "sasrec-bce": ("methods.sasrec:SASRecBCE", "SASRec as in the paper: BCE with one sampled negative"),
    "sasrec-star": ("methods.sasrec:SASRecStar", "SASRec*: ID embedding + structured item-field embeddings"),
    "bert4rec": ("methods.bert4rec:BERT4Rec", "BERT4Rec: bidirectional cloze training, predicts an appended [MASK]"),
    "s3rec": ("methods.s3rec:S3Rec", "S3-Rec: AAP/MIP/MAP/SP self-supervised pre-training, then SASRec-BCE"),
}
READERS = {
    "s3rec": ("bench.readers:read_s3rec", "S3-Rec text format (sequences + item2attributes), optional item text"),
    "lcrec": ("bench.readers:read_lcrec", "LC-Rec JSON format (X.inter.json + X.item.json)"),
    "synthetic": ("bench.synthetic:read_synthetic", "Embedded deterministic synthetic generator"),
}
TOKENIZERS: dict[str, tuple[str, str]] = {}
ENCODERS: dict[str, tuple[str, str]] = {}

for kind, table in (("method", METHODS), ("reader", READERS), ("tokenizer", TOKENIZERS), ("encoder", ENCODERS)):
    for name, (target, description) in table.items():
        register_lazy(kind, name, target, description)

for recipe in discover().values():
    register("dataset", recipe.name, recipe.description)(recipe)
