"""Model families: each exposes fit multi-source, fit single-source, and log-density or sampling.

May import `multisource.metrics`, `multisource.sources`, `multisource.theory` and
`multisource.common`; never experiments, readings or the book.
"""
