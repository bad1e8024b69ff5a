"""Image-generation metrics: Frechet distance and KID on the features of an in-repo domain
classifier ("FCD", not FID), class-consistency accuracy, and opt-in Inception FID features."""

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
from multisource.image_metrics.inception import (
    INCEPTION_ENV,
    InceptionUnavailableError,
    inception_features,
    inception_weights_path,
    load_inception,
)
from multisource.image_metrics.scores import class_scores, similarity_table

__all__ = [
    "INCEPTION_ENV",
    "ClassifierConfig",
    "FeatureClassifier",
    "InceptionUnavailableError",
    "TrainedClassifier",
    "class_scores",
    "frechet_distance",
    "frechet_distance_features",
    "gaussian_stats",
    "inception_features",
    "inception_weights_path",
    "kernel_inception_distance",
    "load_inception",
    "load_or_train_classifier",
    "similarity_table",
    "train_classifier",
]
