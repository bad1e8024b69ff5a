"""Memorisation: are samples closer to the training images than to fresh images of the class?

For each generated image, the Euclidean pixel distance to its nearest neighbour among the
model's n training images of the class, and among n other images of the same class that the
model never saw. If the model generalises, a sample is as likely to land near one set as near
the other (both are n draws from the class), so the fraction of samples whose nearest
training image is nearer than their nearest fresh image is 1/2 in expectation; a model that
reproduces its training images pushes it towards 1 and the distance ratio below 1.
"""

from __future__ import annotations

import numpy as np

from multisource.common.validation import InputError


def nearest_distances(queries: np.ndarray, pool: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each query image to its nearest image in `pool` (pixels)."""
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    p = np.asarray(pool, dtype=np.float64).reshape(len(pool), -1)
    if len(q) == 0 or len(p) == 0 or q.shape[1] != p.shape[1]:
        raise InputError(f"queries and pool must be non-empty with equal image sizes, got "
                         f"{q.shape} and {p.shape}")
    p_sq = (p ** 2).sum(1)
    out = np.empty(len(q))
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        d2 = (block ** 2).sum(1)[:, None] + p_sq[None] - 2.0 * block @ p.T
        out[start:start + chunk] = np.sqrt(np.clip(d2.min(1), 0.0, None))
    return out


def memorisation_scores(generated: np.ndarray, training: np.ndarray,
                        fresh: np.ndarray) -> dict[str, float]:
    """Nearest-neighbour statistics of samples against training and fresh images of a class.

    `training` and `fresh` should hold the same number of images (equal-size sets make the
    no-memorisation expectation of `mem_closer_frac` exactly 1/2).
    nn_train / nn_fresh: median nearest distances; mem_ratio = nn_train / nn_fresh;
    mem_closer_frac: share of samples nearer to a training image than to any fresh one.
    """
    to_train = nearest_distances(generated, training)
    to_fresh = nearest_distances(generated, fresh)
    nn_train, nn_fresh = float(np.median(to_train)), float(np.median(to_fresh))
    return {"nn_train": nn_train, "nn_fresh": nn_fresh,
            "mem_ratio": nn_train / nn_fresh if nn_fresh > 0 else float("nan"),
            "mem_closer_frac": float((to_train < to_fresh).mean()),
            "mem_set_size": int(min(len(training), len(fresh)))}
