"""Small numpy training: dense layers with biases, forward and backward in float32, Adam, a gradient checker.

Shared by every trained thing in the project (fitted CPPN looks, learned features). The networks
are tiny (thousands of weights), so plain numpy matmuls are the whole cost and no framework is
needed; float64 models exist for the finite-difference check only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "relu", "sin", "gaussian", "identity")


def activate(z: np.ndarray, kind: str) -> np.ndarray:
    """act(z) as a new array; gaussian is exp(-z^2) as the cppn node computes it."""
    if kind == "tanh":
        return np.tanh(z)
    if kind == "sigmoid":
        # (1 + tanh(z/2)) / 2 == 1/(1 + exp(-z)) and never overflows (the cppn node's sigmoid mapping).
        return 0.5 * np.tanh(0.5 * z) + 0.5
    if kind == "relu":
        return np.maximum(z, 0)
    if kind == "sin":
        return np.sin(z)
    if kind == "gaussian":
        return np.exp(-np.square(z))
    if kind == "identity":
        return z.copy()
    raise ValueError(f"unknown activation {kind!r}: expected one of {', '.join(ACTIVATIONS)}")


def derivative(z: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """d act / d z at z, given y = act(z) (each uses whichever is cheaper)."""
    if kind == "tanh":
        return 1 - np.square(y)
    if kind == "sigmoid":
        return y * (1 - y)
    if kind == "relu":
        return (z > 0).astype(z.dtype)
    if kind == "sin":
        return np.cos(z)
    if kind == "gaussian":
        return -2 * z * y
    if kind == "identity":
        return np.ones_like(z)
    raise ValueError(f"unknown activation {kind!r}")


@dataclass
class MLP:
    """Dense layers y_l = act_l(y_{l-1} @ W_l + b_l); weights (n_in, n_out), biases (n_out,)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activations: list[str]          # one per layer, the last one the output's
    frozen: set = field(default_factory=set)   # names of params ("W0", "b3") that training leaves as they are

    @classmethod
    def create(cls, sizes: list[int], *, activation: str = "tanh", output: str = "identity", seed: int = 0,
               dtype=np.float32) -> MLP:
        """Glorot-uniform weights (for sin too: inputs stay within +-pi/2 at the start) and zero biases."""
        for kind in (activation, output):
            if kind not in ACTIVATIONS:
                raise ValueError(f"unknown activation {kind!r}: expected one of {', '.join(ACTIVATIONS)}")
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            limit = np.sqrt(6.0 / (n_in + n_out))
            weights.append(rng.uniform(-limit, limit, (n_in, n_out)).astype(dtype))
            biases.append(np.zeros(n_out, dtype))
        return cls(weights, biases, [activation] * (len(sizes) - 2) + [output])

    @property
    def sizes(self) -> list[int]:
        return [self.weights[0].shape[0]] + [w.shape[1] for w in self.weights]

    def params(self) -> dict[str, np.ndarray]:
        """Every parameter by name, W0, b0, W1, ... (the arrays themselves, not copies)."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"W{i}"], out[f"b{i}"] = w, b
        return out

    def astype(self, dtype) -> MLP:
        """A copy in another dtype (float64 for the gradient check)."""
        return MLP([w.astype(dtype) for w in self.weights], [b.astype(dtype) for b in self.biases],
                   list(self.activations), set(self.frozen))

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list]:
        """[shape=(n, n_in)] -> ([shape=(n, n_out)], what backward() needs)."""
        cache = []
        y = np.asarray(x, self.weights[0].dtype)
        for w, b, kind in zip(self.weights, self.biases, self.activations):
            z = y @ w
            z += b
            out = activate(z, kind)
            cache.append((y, z, out))
            y = out
        return y, cache

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0]

    def backward(self, cache: list, grad_out: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(d loss / d each param by name, d loss / d input) from d loss / d output."""
        grads = {}
        g = grad_out
        for i in range(len(self.weights) - 1, -1, -1):
            y_in, z, out = cache[i]
            g = g * derivative(z, out, self.activations[i])
            grads[f"W{i}"] = y_in.T @ g
            grads[f"b{i}"] = g.sum(axis=0)
            g = g @ self.weights[i].T
        return grads, g


def mse(pred: np.ndarray, target: np.ndarray, weight: float = 1.0) -> tuple[float, np.ndarray]:
    """(weight * mean squared error, its gradient with respect to pred)."""
    diff = pred - target
    return float(weight * np.mean(np.square(diff, dtype=np.float64))), (2.0 * weight / diff.size) * diff


class Adam:
    """Adam (Kingma & Ba 2015) over an MLP's params, in their own dtype; frozen params are skipped."""

    def __init__(self, model: MLP, *, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.model, self.lr, self.betas, self.eps = model, lr, betas, eps
        self.m = {k: np.zeros_like(v) for k, v in model.params().items()}
        self.v = {k: np.zeros_like(v) for k, v in model.params().items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray], lr: float | None = None) -> None:
        """Update the model's params in place from one batch's gradients."""
        self.t += 1
        b1, b2 = self.betas
        # The bias corrections folded into the step size (the paper's "efficient" form).
        step = (self.lr if lr is None else lr) * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for name, p in self.model.params().items():
            if name in self.model.frozen:
                continue
            g = grads[name]
            m, v = self.m[name], self.v[name]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * np.square(g)
            p -= (step * m / (np.sqrt(v) + self.eps)).astype(p.dtype)


def batches(n: int, batch_size: int, rng: np.random.Generator):
    """Index arrays of one shuffled pass over n samples, `batch_size` at a time (the last may be shorter)."""
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def gradient_check(model: MLP, x: np.ndarray, target: np.ndarray, *, h: float = 1e-6) -> float:
    """Largest relative difference between backward()'s gradients and central differences of the MSE.

    Run in float64 on a copy: with h = 1e-6, the central difference's truncation error (h^2 f''')
    and rounding error (eps64 / h) are both near 1e-10, far below the 1e-3 the tests allow.
    Relative to max(|analytic|, |numeric|, 1e-6): the rounding error of a loss near 1 is ~1e-10 absolute,
    so a gradient below 1e-6 (a saturated unit, a dead relu) compares on that absolute scale instead.
    """
    model = model.astype(np.float64)
    x, target = np.asarray(x, np.float64), np.asarray(target, np.float64)
    out, cache = model.forward(x)
    grads, _ = model.backward(cache, mse(out, target)[1])
    worst = 0.0
    for name, p in model.params().items():
        flat = p.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            up = mse(model(x), target)[0]
            flat[i] = keep - h
            down = mse(model(x), target)[0]
            flat[i] = keep
            numeric = (up - down) / (2 * h)
            analytic = grads[name].reshape(-1)[i]
            worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-6))
    return worst
