"""sidbench: a benchmark and reproducibility suite for semantic-ID tokenizers."""

__version__ = "0.1.0"
