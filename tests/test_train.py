"""The shared numpy trainer: gradients against finite differences, Adam, determinism, frozen params."""

import numpy as np
import pytest

from cppnviz import train
from cppnviz.train import ACTIVATIONS, MLP, Adam, gradient_check, mse


def small(activation: str, output: str = "sigmoid", seed: int = 1) -> MLP:
    """A 5 -> 7 -> 6 -> 3 network with nonzero biases (zero biases would hide a wrong bias gradient)."""
    model = MLP.create([5, 7, 6, 3], activation=activation, output=output, seed=seed)
    rng = np.random.default_rng(seed)
    for b in model.biases:
        b[:] = rng.normal(0, 0.5, b.shape)
    return model


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(9, 5)), rng.uniform(size=(9, 3))


@pytest.mark.parametrize("output", ["sigmoid", "identity"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_finite_differences(activation, output):
    assert gradient_check(small(activation, output), *data()) < 1e-3


def test_the_check_catches_a_wrong_derivative(monkeypatch):
    # The checker itself can fail: a derivative off by 10 % is far outside 1e-3.
    right = train.derivative
    monkeypatch.setattr(train, "derivative", lambda z, y, kind: right(z, y, kind) * (1.1 if kind == "tanh" else 1.0))
    assert gradient_check(small("tanh"), *data()) > 1e-2


def test_input_gradient_matches_finite_differences():
    # backward() also returns d loss / d input: what a network feeding this one would need.
    model = small("tanh").astype(np.float64)
    x, target = data()
    out, cache = model.forward(x)
    _, grad_x = model.backward(cache, mse(out, target)[1])
    h = 1e-6
    for i, j in [(0, 0), (3, 2), (8, 4)]:
        up, down = x.copy(), x.copy()
        up[i, j] += h
        down[i, j] -= h
        numeric = (mse(model(up), target)[0] - mse(model(down), target)[0]) / (2 * h)
        assert abs(numeric - grad_x[i, j]) <= 1e-3 * max(abs(numeric), 1e-6)


def test_forward_is_float32_and_matches_float64():
    model = small("sin")
    x, _ = data()
    out32 = model(x.astype(np.float32))
    assert out32.dtype == np.float32
    # Three layers of at most 7 terms: each float32 sum is within gamma_8 ~ 5e-7 of its terms' magnitude,
    # carried through Lipschitz-1 activations: 1e-5 is a wide margin, 1e-2 a wrong network.
    assert np.abs(out32 - model.astype(np.float64)(x)).max() < 1e-5


def train_linear(seed: int, steps: int = 400) -> MLP:
    """Adam fitting y = x A + c with one identity layer: a problem with a known exact answer."""
    rng = np.random.default_rng(99)
    a, c = rng.normal(size=(4, 2)).astype(np.float32), np.array([0.5, -1.0], np.float32)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    model = MLP.create([4, 2], output="identity", seed=seed)
    opt = Adam(model, lr=0.05)
    batch_rng = np.random.default_rng(seed)
    for _ in range(steps):
        for idx in train.batches(len(x), 64, batch_rng):
            out, cache = model.forward(x[idx])
            grads, _ = model.backward(cache, mse(out, x[idx] @ a + c)[1])
            opt.step(grads, lr=0.05 * 0.99 ** opt.t)
    return model, a, c


def test_adam_finds_a_known_answer_and_is_deterministic():
    model, a, c = train_linear(seed=3)
    assert np.abs(model.weights[0] - a).max() < 1e-3 and np.abs(model.biases[0] - c).max() < 1e-3
    again, _, _ = train_linear(seed=3)
    assert np.array_equal(again.weights[0], model.weights[0]) and np.array_equal(again.biases[0], model.biases[0])


def test_frozen_params_stay_as_they_are():
    model = small("tanh")
    model.frozen = {"W0", "b2"}
    before = {k: v.copy() for k, v in model.params().items()}
    x, target = data()
    opt = Adam(model)
    for _ in range(5):
        out, cache = model.forward(x.astype(np.float32))
        opt.step(model.backward(cache, mse(out, target)[1])[0])
    after = model.params()
    assert np.array_equal(after["W0"], before["W0"]) and np.array_equal(after["b2"], before["b2"])
    assert not np.array_equal(after["W1"], before["W1"])


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP.create([2, 3, 1], activation="swish")
