"""Do the filters of a group learn one concept? The group regularizers' filter groups, scored on a
dissection's unit table."""
from __future__ import annotations

import numpy as np
import pandas as pd


def group_agreement(units: pd.DataFrame, groups: int, permutations: int = 200, seed: int = 0) -> pd.DataFrame:
    """Do the filters of a group learn one concept? Per layer and group (the layer's units split into
    `groups` contiguous groups, as the group regularizers split filters): the most common best concept
    among the group's units (units that overlap nothing, '-', have none), the share of the group's units
    whose best concept it is (`agreement`), the share that detect it (`detecting`), and `chance`: the
    mean agreement of groups of the same sizes drawn from the layer's units at random (seeded)."""
    gen = np.random.default_rng(seed)
    rows = []

    def modal(concepts: np.ndarray) -> tuple[str, int]:
        named = concepts[concepts != "-"]
        if not len(named):
            return "-", 0
        values, counts = np.unique(named, return_counts=True)
        return str(values[counts.argmax()]), int(counts.max())

    for layer, frame in units.groupby("layer", sort=False):
        frame = frame.sort_values("unit")
        concepts = frame.concept.to_numpy().astype(str)
        detector = frame.detector.to_numpy().astype(bool)
        blocks = np.array_split(np.arange(len(frame)), min(groups, len(frame)))
        shuffled = [gen.permutation(len(frame)) for _ in range(permutations)]
        for g, block in enumerate(blocks):
            concept, count = modal(concepts[block])
            start, stop = block[0], block[-1] + 1
            chance = np.mean([modal(concepts[p[start:stop]])[1] / len(block) for p in shuffled])
            rows.append({"layer": layer, "group": g, "units": len(block), "concept": concept,
                         "agreement": count / len(block),
                         "detecting": float(((concepts[block] == concept) & detector[block]).mean()) if count else 0.0,
                         "chance": float(chance)})
    return pd.DataFrame(rows, columns=["layer", "group", "units", "concept", "agreement", "detecting", "chance"])
