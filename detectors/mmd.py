"""Maximum mean discrepancy (MMD) between the window and the reference, over many features
or an embedding, with a permutation test (torch; on the GPU when there is one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field

from detectors.base import ReferenceDetector, Status
from detectors.calibration import gamma_pvalues
from detectors.ring import FloatArray
from detectors.windowed import Verdict, WindowedDetector, WindowFields, Windows


class Config(WindowFields):
    """A two-sample test on whole rows: the (biased, V-statistic) squared MMD with a
    Gaussian kernel (Gretton et al., JMLR 2012) between the current window and the
    reference, features standardised by the reference, bandwidth by the median heuristic
    on the reference. Rows with any non-finite value are left out.

    Each test permutes the pooled rows ``permutations`` times. ``calibration="gamma"``
    (default) fits a gamma distribution to the permuted statistics (Gretton et al.'s
    approximation), so p-values reach the small levels a false-alarm budget gives (with
    the defaults, 1e-3) without thousands of permutations; ``"permutation"`` is the plain
    count ``(1 + #{perm >= observed}) / (1 + permutations)`` (needs ``permutations`` well
    above ``1 / level``). The reference is subsampled to ``max_reference`` rows.
    ``device`` ``"auto"`` picks CUDA when available.
    """

    kind: Literal["mmd"] = "mmd"
    calibration: Literal["gamma", "permutation"] = "gamma"
    permutations: Annotated[int, Field(ge=10)] = 200
    max_reference: Annotated[int, Field(ge=10)] = 2000
    device: str = "auto"


class MMDJudge:
    """The MMD permutation test as a :class:`~detectors.windowed.Judge`."""

    def __init__(self, cfg: Config, n_features: int) -> None:
        self.cfg = cfg
        self.threshold: float | None = cfg.level
        dev = cfg.device
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available()
                                   else ("cpu" if dev == "auto" else dev))
        self._ref: torch.Tensor | None = None
        self._mean = np.zeros(n_features)
        self._sd = np.ones(n_features)
        self._gamma = 1.0

    def fit(self, reference: FloatArray) -> None:
        ref = reference[np.isfinite(reference).all(axis=1)]
        if len(ref) < self.cfg.min_samples:
            self._ref = None
            return
        rng = np.random.default_rng(self.cfg.seed)
        if len(ref) > self.cfg.max_reference:
            ref = ref[rng.choice(len(ref), self.cfg.max_reference, replace=False)]
        self._mean, sd = ref.mean(axis=0), ref.std(axis=0)
        self._sd = np.where(sd > 0, sd, 1.0)
        x = torch.as_tensor((ref - self._mean) / self._sd, dtype=torch.float32, device=self.device)
        sub = x[: min(len(x), 1000)]
        d2 = torch.cdist(sub, sub).pow(2)
        med = float(torch.median(d2[d2 > 0])) if bool((d2 > 0).any()) else 1.0
        self._gamma = 1.0 / med
        self._ref = x

    def evaluate(self, current: FloatArray) -> Verdict:
        cur = current[np.isfinite(current).all(axis=1)]
        cfg = self.cfg
        details: dict[str, Any] = {"test": "mmd", "calibration": cfg.calibration,
                                   "rows_used": len(cur), "device": self.device.type}
        if self._ref is None or len(cur) < cfg.min_samples:
            return Verdict("not_enough_data", None, self.threshold, details)
        y = torch.as_tensor((cur - self._mean) / self._sd, dtype=torch.float32, device=self.device)
        z = torch.cat([self._ref, y])
        if not bool((z.amax(dim=0) > z.amin(dim=0)).any()):  # one point: nothing to compare
            return Verdict("not_enough_data", None, self.threshold, {**details, "constant": True})
        n, m = len(self._ref), len(y)
        k = torch.exp(-self._gamma * torch.cdist(z, z).pow(2))
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)  # same permutations each test
        perms = torch.stack([torch.randperm(n + m, generator=gen) for _ in range(cfg.permutations)])
        labels = torch.zeros(cfg.permutations + 1, n + m)
        labels[0, :n] = 1.0
        labels[1:] = (perms < n).float()
        w = (labels / n - (1 - labels) / m).to(self.device)
        stats = ((w @ k) * w).sum(dim=1).double().cpu().numpy()
        observed, null = float(stats[0]), stats[1:]
        if cfg.calibration == "permutation":
            p = float((1 + np.sum(null >= observed)) / (1 + len(null)))
        else:
            p = float(gamma_pvalues(np.array([observed]), null[:, None])[0])
        details.update({"mmd2": observed, "p_value": p, "null_mean": float(null.mean()),
                        "bandwidth": float(np.sqrt(1 / (2 * self._gamma)))})
        if not np.isfinite(p):  # never read a NaN as "no drift"
            return Verdict("not_enough_data", None, self.threshold, details)
        status: Status = "drift" if self.threshold is not None and p < self.threshold else "ok"
        return Verdict(status, p, self.threshold, details)


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """An MMD detector over ``cfg.features`` (all of ``features`` if ``None``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(device="cpu", max_reference=500), features=["a", "b", "c"])
    >>> det.set_reference(rng.normal(size=(2000, 3)))
    >>> det.update(rng.normal(size=(300, 3)))
    >>> det.check().status
    'ok'
    >>> cov = [[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]]  # same marginals
    >>> det.update(rng.multivariate_normal(np.zeros(3), cov, size=500))
    >>> det.check().status
    'drift'
    """
    watched = list(features) if cfg.features is None else list(cfg.features)
    windows = Windows(cfg.reference_size, cfg.window_size, cfg.min_samples, cfg.stride)
    return WindowedDetector(cfg.name or cfg.kind, cfg.signal, features, watched, windows,
                            MMDJudge(cfg, len(watched)))
