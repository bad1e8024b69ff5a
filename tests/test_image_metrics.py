"""FCD/KID machinery: Frechet distance in closed form, KID unbiasedness, the classifier,
memorisation statistics, and the opt-in Inception path failing loudly."""

from __future__ import annotations

import numpy as np
import pytest

from multisource.common.validation import InputError
from multisource.image_metrics import (
    class_scores,
    frechet_distance,
    frechet_distance_features,
    kernel_inception_distance,
    load_or_train_classifier,
    memorisation_scores,
    nearest_distances,
)
from multisource.image_metrics.frechet import gaussian_stats
from multisource.image_metrics.inception import InceptionUnavailableError, inception_features
from multisource.images import load_domain


def test_frechet_distance_closed_form_for_gaussians() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    # diagonal covariances: |mu1-mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    # a rotation of both covariances does not change the distance
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rotated = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-8)
    # general covariances: the 1-D case is (m1-m2)^2 + (sd1-sd2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([0.0]),
                            np.array([[1.0]])) == pytest.approx(2.0)
    with pytest.raises(InputError, match="shapes"):
        frechet_distance(mu1, np.eye(4), mu2[:3], np.eye(3))


def test_frechet_of_a_set_against_itself_is_zero_and_grows_with_a_shift() -> None:
    x = np.random.default_rng(1).normal(size=(500, 6))
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance_features(x, x + 0.5) == pytest.approx(6 * 0.25, rel=1e-6)
    mu, sigma = gaussian_stats(x)
    assert mu.shape == (6,) and sigma.shape == (6, 6)


def test_kid_is_unbiased_near_zero_for_equal_distributions() -> None:
    rng = np.random.default_rng(2)
    same = [kernel_inception_distance(rng.normal(size=(100, 8)), rng.normal(size=(100, 8)),
                                      num_subsets=1, subset_size=100, seed=i)[0]
            for i in range(60)]
    shifted = kernel_inception_distance(rng.normal(size=(100, 8)),
                                        rng.normal(0.5, 1, size=(100, 8)), num_subsets=1,
                                        subset_size=100)[0]
    mean, se = np.mean(same), np.std(same, ddof=1) / np.sqrt(len(same))
    assert abs(mean) < 3 * se            # unbiased: centred on 0 (takes negative values too)
    assert min(same) < 0
    assert shifted > mean + 10 * se
    with pytest.raises(InputError, match="feature dimensions"):
        kernel_inception_distance(np.zeros((5, 2)), np.zeros((5, 3)))


def test_digits_classifier_features_and_scores() -> None:
    clf = load_or_train_classifier("digits", 8)
    domain = load_domain("digits", 8)
    assert clf.test_accuracy > 0.8
    real = domain.test_images[domain.test_labels == 3]
    other = domain.test_images[domain.test_labels == 0]
    feats = clf.features(real)
    assert feats.shape == (len(real), 64) and np.isfinite(feats).all()
    same = class_scores(clf, real[:35], real[35:], 3)
    wrong = class_scores(clf, other, real, 3)
    assert same["accuracy"] > 0.8 and wrong["accuracy"] < 0.2
    assert same["fcd"] < wrong["fcd"] and same["kid_x1000"] < wrong["kid_x1000"]
    assert clf.weights_sha256 == load_or_train_classifier("digits", 8).weights_sha256
    with pytest.raises(InputError, match="images"):
        clf.features(np.zeros((2, 7, 7)))


def test_inception_path_fails_loudly_without_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MULTISOURCE_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(InceptionUnavailableError) as err:
        inception_features(np.zeros((2, 8, 8)))
    assert "\n" not in str(err.value) and "MULTISOURCE_INCEPTION_WEIGHTS" in str(err.value)
    monkeypatch.setenv("MULTISOURCE_INCEPTION_WEIGHTS", str(tmp_path / "absent.pt"))
    with pytest.raises(InceptionUnavailableError, match="not found"):
        inception_features(np.zeros((2, 8, 8)))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(InceptionUnavailableError, match="TorchScript"):
        inception_features(np.zeros((2, 8, 8)), junk)


def test_nearest_distances_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    q, p = rng.random((7, 3, 3)), rng.random((11, 3, 3))
    brute = np.sqrt(((q[:, None] - p[None]) ** 2).sum((2, 3))).min(1)
    assert np.allclose(nearest_distances(q, p, chunk=3), brute)
    with pytest.raises(InputError, match="equal image sizes"):
        nearest_distances(q, rng.random((4, 2, 2)))


def test_memorisation_separates_copies_from_fresh_draws() -> None:
    rng = np.random.default_rng(1)
    train, fresh = rng.random((60, 4, 4)), rng.random((60, 4, 4))
    # samples that are slightly perturbed training images: memorised
    copies = train[rng.integers(0, 60, 200)] + 0.01 * rng.standard_normal((200, 4, 4))
    memorised = memorisation_scores(copies, train, fresh)
    assert memorised["mem_closer_frac"] > 0.95 and memorised["mem_ratio"] < 0.2
    # new draws from the same distribution: as near to one set as to the other
    new = memorisation_scores(rng.random((2000, 4, 4)), train, fresh)
    assert 0.45 < new["mem_closer_frac"] < 0.55 and 0.9 < new["mem_ratio"] < 1.1
