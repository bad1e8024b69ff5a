"""Per-class scores of generated images, and measured similarity of class groups."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from multisource.common.validation import InputError
from multisource.image_metrics.classifier import TrainedClassifier
from multisource.image_metrics.frechet import frechet_distance_features, kernel_inception_distance


def class_scores(classifier: TrainedClassifier, generated: np.ndarray, reference: np.ndarray,
                 target_label: int, *, kid_subsets: int = 20, seed: int = 0) -> dict[str, float]:
    """FCD, KID (x1000) and class-consistency accuracy of `generated` images of one class.

    `generated` and `reference` are images in [0, 1] of the same class; `target_label` is the
    domain's label of that class (what the classifier should predict for every sample).
    """
    if len(generated) < 2 or len(reference) < 2:
        raise InputError(f"need at least 2 generated and 2 reference images, got "
                         f"{len(generated)} and {len(reference)}")
    gen_features = classifier.features(generated)
    ref_features = classifier.features(reference)
    kid, kid_std = kernel_inception_distance(gen_features, ref_features, num_subsets=kid_subsets,
                                             subset_size=min(len(generated), len(reference),
                                                             500), seed=seed)
    accuracy = float((classifier.predict(generated) == target_label).mean())
    pixels_gen = np.asarray(generated, dtype=np.float64).reshape(len(generated), -1)
    pixels_ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    return {"fcd": frechet_distance_features(gen_features, ref_features),
            "kid_x1000": 1000.0 * kid, "kid_std_x1000": 1000.0 * kid_std,
            "accuracy": accuracy,
            "pixel_fd": frechet_distance_features(pixels_gen, pixels_ref)}


def similarity_table(classifier: TrainedClassifier, images: np.ndarray, labels: np.ndarray,
                     groups: dict[str, tuple[int, ...]], anchor: int) -> list[dict[str, float]]:
    """Measured similarity of each class group from held-out real images.

    For each group: the mean pairwise Frechet distance between its classes and the mean
    distance from the anchor to the others, both in the classifier's features (FCD) and in
    pixel space. Smaller distance = more similar. The classifier was trained to tell the
    classes apart, so its distances exaggerate differences; pixel FD is the label-free check.
    """
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def feats(c: int) -> tuple[np.ndarray, np.ndarray]:
        if c not in cache:
            x = images[labels == c]
            cache[c] = (classifier.features(x), np.asarray(x, np.float64).reshape(len(x), -1))
        return cache[c]

    rows = []
    for name, classes in groups.items():
        if anchor not in classes:
            raise InputError(f"groups: group {name} does not contain the anchor class {anchor}")
        pair_fcd, pair_pix, anchor_fcd, anchor_pix = [], [], [], []
        for a, b in combinations(classes, 2):
            fcd = frechet_distance_features(feats(a)[0], feats(b)[0])
            pix = frechet_distance_features(feats(a)[1], feats(b)[1])
            pair_fcd.append(fcd)
            pair_pix.append(pix)
            if anchor in (a, b):
                anchor_fcd.append(fcd)
                anchor_pix.append(pix)
        rows.append({"group": name, "K": len(classes),
                     "classes": " ".join(str(c) for c in classes),
                     "fcd_pairwise": float(np.mean(pair_fcd)) if pair_fcd else 0.0,
                     "fcd_to_anchor": float(np.mean(anchor_fcd)) if anchor_fcd else 0.0,
                     "pixel_fd_pairwise": float(np.mean(pair_pix)) if pair_pix else 0.0,
                     "pixel_fd_to_anchor": float(np.mean(anchor_pix)) if anchor_pix else 0.0})
    return rows
