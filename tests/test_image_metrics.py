"""FCD/KID machinery: Frechet distance in closed form, KID unbiasedness, the classifier, and the
opt-in Inception path failing loudly."""

from __future__ import annotations

import numpy as np
import pytest

from multisource.image_metrics import (
    class_scores,
    frechet_distance,
    frechet_distance_features,
    kernel_inception_distance,
    load_or_train_classifier,
)
from multisource.image_metrics.frechet import gaussian_stats
from multisource.image_metrics.inception import InceptionUnavailableError, inception_features
from multisource.images import load_domain
from multisource.validation import InputError


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


@pytest.mark.slow
def test_smoke_experiment_trains_samples_and_scores(tmp_path, monkeypatch) -> None:
    """The `smoke` profile end to end (digits 8x8): train, sample, score, store, reload."""
    from multisource.experiments import edm2_miniature as exp
    from multisource.experiments.runner import load_results, run_experiment

    monkeypatch.setattr(exp, "WORK_DIR", tmp_path / "work")
    config = exp.PROFILES["smoke"]
    stored = run_experiment("edm2_miniature", "smoke", "cpu", progress=False,
                            results_dir=tmp_path)
    frame = stored.frame
    sim = frame[frame["kind"] == "similarity"]
    assert set(sim["level"]) == {"high", "low"} and (sim["fcd_pairwise"] > 0).all()
    models = frame[frame["kind"].isin(["single", "multi"])]
    assert len(models) == 5 + 2 * 3   # five single-class models, two 3-class models
    real = frame[frame["kind"] == "real"]
    assert sorted(real["class"]) == [0, 1, 3, 5, 8]
    # real images are the floor: far closer to the held-out reference than smoke samples
    assert real["fcd"].max() < models["fcd"].min()
    assert np.isfinite(models["fcd"]).all() and (models["fcd"] > 0).all()
    assert models["accuracy"].between(0, 1).all()
    # fairness: a K-class model runs K times the per-class steps on the same n per class
    assert (models["train_steps"] == models["K"] * config.steps_per_class).all()
    assert (models["n_train"] == config.n_per_class).all()
    grid = exp.decode_grid(models["grid_hex"].iloc[0], config.resolution)
    assert grid.shape == (config.grid_per_class, 8, 8) and grid.dtype == np.uint8
    table = exp.summary_table(frame, config)
    assert set(table["estimator"]) == {"multi", "single", "real"}
    k1 = table[table["K"] == 1].set_index(["level", "estimator"])["fcd"]
    assert k1[("high", "multi")] == k1[("high", "single")]   # K = 1: one and the same model
    again = load_results("edm2_miniature", "smoke", results_dir=tmp_path)
    assert again is not None and again.provenance["config_hash"] == \
        stored.provenance["config_hash"]
