"""The exact picture of a numpy CPPN network, and the agreement region the GPU backend is held to.

Both backends compute in float32 and differ from each other only in rounding. Where each is within
half a level (1/510) of the exact picture (float64 arithmetic on the same float32 weights and
coordinates), the two are within one level (1/255) of each other: that is the agreement region
(README, "NVIDIA GPUs"). Outside it float32 itself is chaotic and no two backends can agree.
"""

from __future__ import annotations

import numpy as np

HALF_LEVEL = 1 / 510

_ACTIVATIONS = {"tanh": np.tanh, "sin": np.sin, "gaussian": lambda z: np.exp(-z * z),
                "clip": lambda z: np.clip(z, -1.0, 1.0)}


def pixel_inputs(network) -> np.ndarray:
    """Every pixel's (row, col, r, 1) in float64, [shape=(height * width, 4)]: layer 1's input rows."""
    h, w = network.height, network.width
    columns = (np.broadcast_to(network.y[:, None], (h, w)), np.broadcast_to(network.x[None, :], (h, w)),
               network.r, np.ones((h, w)))
    return np.stack(columns, axis=-1).reshape(-1, 4).astype(np.float64)


def exact_frame(network) -> np.ndarray:
    """(height, width, 3) float64 picture of a numpy-backend Network's last render, without rounding.

    The per-frame row of layer 1 (features and cos t times their weights, w_first[3]) is the one
    the last render() set; the vignette's float32 shade is the same in both backends.
    """
    h, w = network.height, network.width
    values = pixel_inputs(network)
    act = _ACTIVATIONS[network.activation]
    for weights in network.w_layers[:-1]:
        values = act(values @ weights.astype(np.float64))
    z = values @ network.w_layers[-1].astype(np.float64)
    out = (1 + np.tanh(z / 2)) / 2 if network.mapping == "sigmoid" else (1 + act(z)) / 2
    out = np.broadcast_to(out.reshape(h, w, -1), (h, w, 3))
    return out * network.vignette if network.vignette is not None else out


def levels_off(frame: np.ndarray, network) -> float:
    """Largest distance of a frame from the network's exact picture, in 8-bit levels."""
    return float(np.abs(np.asarray(frame, np.float64) - exact_frame(network)).max() * 255)
