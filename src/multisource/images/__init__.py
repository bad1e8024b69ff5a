"""Real images that ship offline (Fashion-MNIST from Debian, scikit-learn digits) and the
ImageNet class-subset path of the paper's EDM2 experiment (`multisource.images.imagenet`)."""

from multisource.images.data import (
    DIGITS_CLASSES,
    FASHION_CLASSES,
    FASHION_DIR_ENV,
    FASHION_PACKAGE,
    DataUnavailableError,
    DomainSplit,
    class_subset,
    fashion_mnist_dir,
    load_digits_images,
    load_domain,
    load_fashion_mnist,
    resize_images,
    to_model_range,
)

__all__ = [
    "DIGITS_CLASSES",
    "FASHION_CLASSES",
    "FASHION_DIR_ENV",
    "FASHION_PACKAGE",
    "DataUnavailableError",
    "DomainSplit",
    "class_subset",
    "fashion_mnist_dir",
    "load_digits_images",
    "load_domain",
    "load_fashion_mnist",
    "resize_images",
    "to_model_range",
]
