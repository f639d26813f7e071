"""Generate the staged example's data from scikit-learn's bundled 8×8 digits (no download).

- ``pretrain.csv``: broad data, every digit twice, shifted by up to one pixel, with noise;
- ``task.csv``: the deployment's data (bootstrap rows): half the digits rotated 20°;
- ``stream/part-001.csv``: the other half, rotated the same way, for ``driftloop run``.

Usage: python configs/data/staged/generate.py   (deterministic; rewrites the files)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
FEATURES = [f"p{i:02d}" for i in range(64)]


def frame(images: np.ndarray, labels: np.ndarray, first_id: int) -> pd.DataFrame:
    flat = np.clip(images.reshape(len(images), 64), 0, 16).round(2)
    df = pd.DataFrame(flat, columns=FEATURES)
    df.insert(0, "row_id", [f"r{first_id + i}" for i in range(len(df))])
    df["label"] = labels.astype(int)
    return df


def main() -> None:
    rng = np.random.default_rng(2026)
    d = load_digits()
    images, labels = d.images.astype(np.float64), d.target
    broad = []
    for _ in range(2):
        for img in images:
            dy, dx = rng.integers(-1, 2, size=2)
            broad.append(ndimage.shift(img, (dy, dx), order=0) + rng.normal(0, 1.0, img.shape))
    broad_labels = np.concatenate([labels, labels])
    frame(np.array(broad), broad_labels, 0).to_csv(HERE / "pretrain.csv", index=False)

    perm = rng.permutation(len(labels))
    rotated = np.array([ndimage.rotate(img, 20, reshape=False, order=1) for img in images])
    half = len(perm) // 2
    task, rest = perm[:half], perm[half:]
    frame(rotated[task], labels[task], 100_000).to_csv(HERE / "task.csv", index=False)
    (HERE / "stream").mkdir(exist_ok=True)
    frame(rotated[rest], labels[rest], 200_000).to_csv(HERE / "stream" / "part-001.csv",
                                                       index=False)


if __name__ == "__main__":
    main()
