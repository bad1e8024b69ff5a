"""Folds stratified by source, assigned row by row as a file streams past.

`advise.stratified_folds` shuffles each source's rows and deals them round-robin, which needs
every row at once. Here each source's rows, in file order, are cut into consecutive blocks of
`folds` rows, and the rows of a block are dealt to the folds in a random order (one of
PERMUTATIONS permutations drawn from the seed, picked by a hash of the source and the
block). So, as with the shuffle:

- every source is split exactly: its fold sizes differ by at most one;
- which fold a row lands in is random, and independent of the row's values;

and the fold of a row depends only on its source and its position among that source's rows,
so a reader that keeps one counter per source assigns it batch by batch, with the same result
for any batch sizes. Unlike the shuffle, two rows of one block (neighbours in the file within
a source) never share a fold.
"""

from __future__ import annotations

import numpy as np

from multisource.common.validation import check_int

PERMUTATIONS = 4096
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of unsigned 64-bit integers (arithmetic modulo 2^64)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


class StratifiedFolds:
    """Fold of each row, given the rows' source codes batch by batch in file order."""

    def __init__(self, sources: int, folds: int, seed: int) -> None:
        self.sources = check_int("sources", sources, minimum=1)
        self.folds = check_int("folds", folds, minimum=2, maximum=20)
        rng = np.random.default_rng(check_int("seed", seed, minimum=0))
        self.table = np.argsort(rng.random((PERMUTATIONS, self.folds)), axis=1)
        self.seen = np.zeros(self.sources, np.int64)

    def assign(self, codes: np.ndarray) -> np.ndarray:
        """Folds (int64) of the next rows, whose source codes (0..sources-1) are `codes`."""
        codes = np.asarray(codes)
        counts = np.bincount(codes, minlength=self.sources)
        key = codes.astype(np.min_scalar_type(self.sources))
        order = np.argsort(key, kind="stable")
        starts = np.cumsum(counts) - counts
        index = np.empty(codes.size, np.int64)
        index[order] = np.arange(codes.size) - np.repeat(starts, counts)
        index += self.seen[codes]
        self.seen += counts
        block, position = np.divmod(index, self.folds)
        pick = splitmix64((codes.astype(np.uint64) << np.uint64(40)) | block.astype(np.uint64))
        return self.table[(pick % np.uint64(PERMUTATIONS)).astype(np.int64), position]


def stratified_stream_folds(codes: np.ndarray, sources: int, folds: int, seed: int
                            ) -> np.ndarray:
    """The folds `StratifiedFolds` assigns to all of `codes` (one batch)."""
    return StratifiedFolds(sources, folds, seed).assign(codes)
