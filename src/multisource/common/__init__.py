"""Foundations every package may use: one-line input errors, repository paths, device choice,
provenance (code and config hashes, atomic writes). Imports nothing else from `multisource`."""
