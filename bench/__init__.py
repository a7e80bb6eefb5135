"""sidbench: a benchmark and reproducibility suite for semantic-ID tokenizers.

From Python: ``from bench.api import run`` (not ``bench.run``, which is the runner's package).
"""

__version__ = "0.1.0"
