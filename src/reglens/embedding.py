"""t-SNE of a model's penultimate representation (RegDNNs' figure of how a regularizer arranges the
classes), with two numbers that say how far the picture can be read:

- trustworthiness (Venna & Kaski 2001, scikit-learn's): whether the map's near neighbours are near in
  the representation (1: no false neighbours);
- kNN accuracy: leave-one-out accuracy of a k-nearest-neighbour vote in the 2-D map, how separated the
  classes look;
- the optimizer's final KL divergence, and the representation's own kNN accuracy (what the map
  should show).

scikit-learn's Barnes-Hut t-SNE with PCA initialization, one thread and a fixed seed: the same cell,
the same map."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.manifold import TSNE, trustworthiness
from sklearn.neighbors import NearestNeighbors

EMBEDDING_DEFAULTS = {"enabled": True, "images": 500, "perplexity": 30.0, "neighbors": 5, "seed": 0,
                      "max_iter": 1000}


@torch.no_grad()
def penultimate(model, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """The representation the classifier reads (model.embed), flattened, float64."""
    model.eval()
    z = torch.cat([model.embed(x[i:i + batch_size]).flatten(1) for i in range(0, len(x), batch_size)])
    return z.double().cpu().numpy()


def tsne(z: np.ndarray, perplexity: float, seed: int, max_iter: int) -> tuple[np.ndarray, float]:
    """2-D t-SNE of the rows of z, and its final KL divergence. Perplexity must be below the points."""
    if not 0 < perplexity < len(z):
        raise ValueError(f"embedding.perplexity: {perplexity} must be above 0 and below the {len(z)} points")
    fit = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter,
               n_jobs=1)
    return fit.fit_transform(z), float(fit.kl_divergence_)


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out accuracy of the majority vote of each point's k nearest other points (ties: the
    nearest class among the tied ones)."""
    _, index = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    neighbours = labels[index[:, 1:]]
    correct = 0
    for own, votes in zip(labels, neighbours):
        counts = np.bincount(votes, minlength=labels.max() + 1)
        top = np.flatnonzero(counts == counts.max())
        correct += int(next(v for v in votes if v in top) == own)
    return correct / len(labels)


def embed(model, x: torch.Tensor, y: torch.Tensor, cfg: dict) -> tuple[list[dict], dict]:
    """Map rows (x, y, label) and the scores of one model's t-SNE on images x with labels y."""
    o = {**EMBEDDING_DEFAULTS, **cfg}
    z = penultimate(model, x)
    labels = y.cpu().numpy().astype(np.int64)
    points, kl = tsne(z, o["perplexity"], o["seed"], o["max_iter"])
    scores = {"trustworthiness": float(trustworthiness(z, points, n_neighbors=o["neighbors"])),
              "knn_acc": knn_accuracy(points, labels, o["neighbors"]),
              "representation_knn_acc": knn_accuracy(z, labels, o["neighbors"]),
              "kl_divergence": kl, "points": len(z), "dimensions": int(z.shape[1])}
    rows = [{"x": float(p[0]), "y": float(p[1]), "label": int(t)} for p, t in zip(points, labels)]
    return rows, scores
