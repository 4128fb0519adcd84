"""The GP bandit of PB2's explore step: a time-varying Gaussian process, and UCB over it.

PB2 (:mod:`dasktune.schedulers.pb2`) imports this module only when it explores: it needs
scikit-learn (the Gaussian process) and SciPy (which scikit-learn brings).

The model: a trial's reward changes at a rate ``y`` over a stretch of training that ends at
time ``t``, starts from reward ``r`` and uses the hyperparameters ``x``.  ``y`` is a
Gaussian process over ``(t, r, x)`` whose kernel is the product of an exponential kernel in
``t`` (what was seen long ago says less about now: Bogunovic et al., 2016, "Time-varying
Gaussian process bandit optimization", the model PB2 builds on) and a squared-exponential
kernel with one length scale per input in ``(r, x)``, plus noise.  The next ``x`` maximises
the upper confidence bound ``mean + kappa * std`` at the time and reward the new stretch
starts from.  The mean comes from the data; the standard deviation also counts the
hyperparameters that other trials are trying now, as if already seen, so that trials
exploring at once spread out (Desautels et al., 2014, GP-BUCB).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import (
    RBF,
    ConstantKernel,
    Hyperparameter,
    Kernel,
    Matern,
    WhiteKernel,
)
from threadpoolctl import threadpool_limits

#: Random points the acquisition is evaluated at, and how many of the best are refined.
_CANDIDATES = 512
_REFINED = 3
#: Standardised reward changes are clipped to this many standard deviations.
_CLIP = 3.0


class OnColumns(Kernel):
    """``kernel`` applied to the input columns ``columns`` only.

    Args:
        kernel: A scikit-learn kernel.
        columns: Indices of the input columns it sees.
    """

    def __init__(self, kernel: Kernel, columns: Sequence[int]) -> None:
        self.kernel = kernel
        self.columns = columns

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params: dict[str, Any] = {"kernel": self.kernel, "columns": self.columns}
        if deep:
            params.update(("kernel__" + k, v) for k, v in self.kernel.get_params().items())
        return params

    @property
    def hyperparameters(self) -> list[Hyperparameter]:
        return [
            Hyperparameter("kernel__" + h.name, h.value_type, h.bounds, h.n_elements)
            for h in self.kernel.hyperparameters
        ]

    @property
    def theta(self) -> np.ndarray:
        return self.kernel.theta

    @theta.setter
    def theta(self, theta: np.ndarray) -> None:
        self.kernel.theta = theta

    @property
    def bounds(self) -> np.ndarray:
        return self.kernel.bounds

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self.kernel == other.kernel
            and list(self.columns) == list(other.columns)
        )

    def __call__(
        self, X: np.ndarray, Y: np.ndarray | None = None, eval_gradient: bool = False
    ) -> Any:
        columns = list(self.columns)
        X = np.atleast_2d(X)[:, columns]
        Y = None if Y is None else np.atleast_2d(Y)[:, columns]
        return self.kernel(X, Y, eval_gradient=eval_gradient)

    def diag(self, X: np.ndarray) -> np.ndarray:
        return self.kernel.diag(np.atleast_2d(X)[:, list(self.columns)])

    def is_stationary(self) -> bool:
        return self.kernel.is_stationary()

    def __repr__(self) -> str:
        return f"OnColumns({self.kernel!r}, {list(self.columns)})"


def time_varying_kernel(n_inputs: int) -> Kernel:
    """The kernel over ``(t, r, x_1 .. x_d)`` (``n_inputs = d + 2``), inputs scaled to [0, 1]."""
    decay = OnColumns(Matern(length_scale=1.0, length_scale_bounds=(1e-2, 1e3), nu=0.5), [0])
    shape = OnColumns(
        RBF(length_scale=np.ones(n_inputs - 1), length_scale_bounds=(1e-2, 1e2)),
        list(range(1, n_inputs)),
    )
    return ConstantKernel(1.0, (1e-2, 1e2)) * decay * shape + WhiteKernel(
        noise_level=0.1, noise_level_bounds=(1e-6, 1e1)
    )


def exploration_weight(n: int) -> float:
    """``kappa`` for ``n`` observations: GP-UCB's slowly growing ``sqrt(beta)``, with
    ``beta = 0.5 * log(1 + n)`` (Srinivas et al.'s ``2 log(...)`` scaled down, as their
    experiments do: the theoretical value explores far too much)."""
    return math.sqrt(0.5 * math.log1p(n))


def choose(
    times: np.ndarray,
    rewards: np.ndarray,
    points: np.ndarray,
    changes: np.ndarray,
    context: tuple[float, float],
    pending: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The hyperparameters (scaled to [0, 1]) the next stretch of training should use.

    Args:
        times: ``(n,)`` the time each observed stretch ended at.
        rewards: ``(n,)`` the reward it started from.
        points: ``(n, d)`` its hyperparameters, scaled to [0, 1] by their bounds.
        changes: ``(n,)`` its reward change per unit of time.
        context: The time and reward the new stretch starts from.
        pending: ``(m, d)`` scaled hyperparameters other trials are trying now.
        rng: Draws the candidates and seeds the optimiser's restarts.

    Returns:
        ``(d,)`` values in [0, 1].
    """
    # Small matrices: BLAS threads only contend, with each other and with the loop.
    with threadpool_limits(1):
        return _choose(times, rewards, points, changes, context, pending, rng)


def _choose(
    times: np.ndarray,
    rewards: np.ndarray,
    points: np.ndarray,
    changes: np.ndarray,
    context: tuple[float, float],
    pending: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    d = points.shape[1]
    t_scale = _Scale(np.append(times, context[0]))
    r_scale = _Scale(np.append(rewards, context[1]))
    inputs = np.column_stack([t_scale(times), r_scale(rewards), points])
    start = np.array([t_scale(context[0]), r_scale(context[1])])
    spread = changes.std()
    y = np.zeros_like(changes) if spread == 0 else (changes - changes.mean()) / spread
    y = np.clip(y, -_CLIP, _CLIP)

    seed = int(rng.integers(2**31 - 1))
    model = GaussianProcessRegressor(
        kernel=time_varying_kernel(d + 2), alpha=1e-8, n_restarts_optimizer=0, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(inputs, y)
    spread_model = model
    if len(pending):
        busy = np.column_stack([np.tile(start, (len(pending), 1)), pending])
        spread_model = GaussianProcessRegressor(kernel=model.kernel_, optimizer=None, alpha=1e-8)
        spread_model.fit(np.vstack([inputs, busy]), np.append(y, model.predict(busy)))
    kappa = exploration_weight(len(y))

    def ucb(x: np.ndarray) -> np.ndarray:
        z = np.column_stack([np.tile(start, (len(x), 1)), x])
        _, std = spread_model.predict(z, return_std=True)
        return model.predict(z) + kappa * std

    candidates = rng.random((_CANDIDATES, d))
    values = ucb(candidates)
    best, best_value = candidates[int(np.argmax(values))], float(values.max())
    for x0 in candidates[np.argsort(values)[-_REFINED:]]:
        found = minimize(
            lambda x: -ucb(x.reshape(1, -1))[0],
            x0,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * d,
            options={"maxiter": 50},
        )
        x = np.clip(found.x, 0.0, 1.0)
        value = float(ucb(x.reshape(1, -1))[0])
        if value > best_value:
            best, best_value = x, value
    return best


class _Scale:
    """Min-max scaling to [0, 1] of the values it was made from (a constant maps to 0)."""

    def __init__(self, values: np.ndarray) -> None:
        self.low = float(np.min(values))
        span = float(np.max(values)) - self.low
        self.span = span if span > 0 else 1.0

    def __call__(self, values: Any) -> Any:
        return (np.asarray(values, dtype=float) - self.low) / self.span
