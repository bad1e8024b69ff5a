"""Real images that ship offline (Fashion-MNIST from Debian, Animal-MNIST and MNIST-5k inside
PyPI wheels, scikit-learn digits) and the
ImageNet class-subset path of the paper's EDM2 experiment (`multisource.images.imagenet`).

May import `multisource.models`, `multisource.image_metrics` and `multisource.common`; never
experiments, readings or the book.
"""

from multisource.images.data import (
    ANIMAL_CLASSES,
    DIGITS_CLASSES,
    FASHION_CLASSES,
    FASHION_DIR_ENV,
    FASHION_PACKAGE,
    MNIST_CLASSES,
    DataUnavailableError,
    DomainSplit,
    class_indices,
    class_subset,
    fashion_mnist_dir,
    load_animal_mnist,
    load_digits_images,
    load_domain,
    load_fashion_mnist,
    load_mnist_5k,
    resize_images,
    to_model_range,
    validation_indices,
)

__all__ = [
    "ANIMAL_CLASSES",
    "DIGITS_CLASSES",
    "FASHION_CLASSES",
    "FASHION_DIR_ENV",
    "FASHION_PACKAGE",
    "MNIST_CLASSES",
    "DataUnavailableError",
    "DomainSplit",
    "class_indices",
    "class_subset",
    "fashion_mnist_dir",
    "load_animal_mnist",
    "load_digits_images",
    "load_domain",
    "load_fashion_mnist",
    "load_mnist_5k",
    "resize_images",
    "to_model_range",
    "validation_indices",
]
