"""prismrec: generative sequential recommendation with Semantic IDs (PRISM, TIGER, SASRec)."""

__version__ = "0.1.0"
