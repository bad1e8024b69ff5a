"""Image-generation metrics: Frechet distance and KID on the features of an in-repo domain
classifier ("FCD", not FID), class-consistency accuracy, nearest-neighbour memorisation.
Opt-in Inception FID features live in `multisource.image_metrics.inception` (imported on
demand: the miniature's results do not depend on it).

May import `multisource.images`, `multisource.models` and `multisource.common`; never
experiments, readings or the book.
"""

from multisource.image_metrics.classifier import (
    ClassifierConfig,
    FeatureClassifier,
    TrainedClassifier,
    load_or_train_classifier,
    train_classifier,
)
from multisource.image_metrics.frechet import (
    frechet_distance,
    frechet_distance_features,
    gaussian_stats,
    kernel_inception_distance,
)
from multisource.image_metrics.memorisation import memorisation_scores, nearest_distances
from multisource.image_metrics.scores import class_scores, similarity_table

__all__ = [
    "ClassifierConfig",
    "FeatureClassifier",
    "TrainedClassifier",
    "class_scores",
    "frechet_distance",
    "frechet_distance_features",
    "gaussian_stats",
    "kernel_inception_distance",
    "load_or_train_classifier",
    "memorisation_scores",
    "nearest_distances",
    "similarity_table",
    "train_classifier",
]
