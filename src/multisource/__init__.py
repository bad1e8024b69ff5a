"""multisource: computations behind the companion book to Wang et al. (ICML 2025),
"A Theory for Conditional Generative Modeling on Multiple Data Sources"."""

__version__ = "0.1.0"
