"""Model families: each exposes fit multi-source, fit single-source, and log-density or sampling."""
