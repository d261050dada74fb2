"""t-SNE of the penultimate representation: the representation against a hook on the classifier's
input, the map against scikit-learn's TSNE, the kNN vote against scikit-learn's classifier, and
planted clusters that must come out separated."""
import numpy as np
import pytest
import torch
from sklearn.manifold import TSNE, trustworthiness
from sklearn.neighbors import KNeighborsClassifier

from conftest import REPO
from reglens import config, embedding


def test_penultimate_is_what_the_classifier_reads(digits_model, digits):
    x = digits.x_test[:32].float() / 255
    seen = {}
    handle = digits_model.classifier.register_forward_hook(lambda m, inputs, out: seen.setdefault("in", inputs[0]))
    with torch.no_grad():
        digits_model(x)
    handle.remove()
    np.testing.assert_allclose(embedding.penultimate(digits_model, x, batch_size=7),
                               seen["in"].flatten(1).double().numpy(), rtol=1e-6, atol=1e-6)


def test_map_is_sklearns_tsne_and_planted_clusters_come_out_separated():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, size=(4, 20))
    labels = np.repeat(np.arange(4), 40)
    z = centres[labels] + rng.normal(0, 1, size=(160, 20))
    points, kl = embedding.tsne(z, 20.0, seed=3, max_iter=500)
    fit = TSNE(n_components=2, perplexity=20.0, init="pca", random_state=3, max_iter=500, n_jobs=1)
    np.testing.assert_allclose(points, fit.fit_transform(z), rtol=1e-6, atol=1e-6)
    assert kl == pytest.approx(fit.kl_divergence_)
    assert np.array_equal(points, embedding.tsne(z, 20.0, seed=3, max_iter=500)[0])  # same seed, same map
    assert embedding.knn_accuracy(points, labels, 5) == 1.0
    assert trustworthiness(z, points, n_neighbors=5) > 0.9
    # a map drawn at random keeps no neighbourhoods: the scores fall to chance
    shuffled = rng.normal(size=(160, 2))
    assert embedding.knn_accuracy(shuffled, labels, 5) < 0.5 and trustworthiness(z, shuffled, n_neighbors=5) < 0.7


def test_knn_accuracy_is_leave_one_out_of_sklearns_classifier():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(60, 2))
    labels = (points[:, 0] + 0.7 * rng.normal(size=60) > 0).astype(np.int64)  # two classes, k odd: no ties
    correct = 0
    for i in range(60):
        rest = np.arange(60) != i
        vote = KNeighborsClassifier(n_neighbors=5).fit(points[rest], labels[rest]).predict(points[i:i + 1])[0]
        correct += int(vote == labels[i])
    assert embedding.knn_accuracy(points, labels, 5) == correct / 60
    # a tie (one vote each) goes to the nearest neighbour's class
    line = np.array([[0.0], [1.0], [-3.0]])
    assert embedding.knn_accuracy(line, np.array([0, 0, 1]), 2) == pytest.approx(2 / 3)


def test_embed_scores_and_config_checks(digits_model, digits):
    x, y = digits.x_test[:120].float() / 255, digits.y_test[:120]
    rows, scores = embedding.embed(digits_model, x, y, {"images": 120, "perplexity": 20.0, "max_iter": 300})
    assert len(rows) == scores["points"] == 120 and {r["label"] for r in rows} == set(y.tolist())
    assert scores["representation_knn_acc"] > 0.8 and scores["knn_acc"] > 0.7  # a trained model separates digits
    assert 0.5 < scores["trustworthiness"] <= 1.0 and scores["kl_divergence"] > 0
    cfg = config.load_yaml(REPO / "config" / "demo.yaml")
    with pytest.raises(config.ConfigError, match=r"embedding: perplexity \(50.0\) must be below images \(40\)"):
        config.validate({**cfg, "embedding": {"images": 40, "perplexity": 50.0}})
