"""Per-pixel rounding-error bounds for float32 CPPN frames, derived from the arithmetic.

Two float32 renders of the same pixel may differ when BLAS sums the dot products in another
order: OpenBLAS picks its kernel by CPU (Haswell, SkylakeX, Zen), and on some CPUs even by where
a row sits in the matrix. A tolerance read off one machine's output fails on another, so tests
compare against this bound instead: a first-order forward error analysis of the network the node
actually holds, evaluated in float64 at every pixel. It is a worst case (each rounding at its limit,
all in one direction), so it is loose where a pixel sits on a steep edge and tight elsewhere; applied
pixel by pixel it still catches a picture moved by a single pixel (tests/test_cppn.py).
"""

from __future__ import annotations

import numpy as np

from agreement import pixel_inputs

U = 2.0**-24       # unit roundoff of float32
LIBM_ULPS = 4      # numpy's float32 tanh is within a few ulp of the exact value on every platform


def gamma(k: int) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of a float32 sum of k products."""
    return k * U / (1 - k * U)


def cppn_frame_error(network) -> np.ndarray:
    """Bound on |float32 frame - exact frame| at every pixel, shape (height, width, 1), for a tanh/affine network.

    Per layer z = W^T h: the float32 dot product adds at most gamma_K |W|^T |h| (any summation
    order, Higham 2002, eq. 3.5), plus the error carried in, |W|^T |dh|. tanh then scales the error
    by its slope at the pixel (1 - tanh^2; first order) and rounds once more. Two renders that
    differ only in rounding are within twice this bound of each other.
    """
    if network.activation != "tanh" or network.mapping != "affine" or network.vignette is not None:
        raise ValueError("the bound covers tanh networks with the affine mapping and no vignette")
    h, w = network.height, network.width
    values = pixel_inputs(network)
    # The per-frame bias (features, cos t) reaches layer 1 through the constant-1 column.
    weights = [m.astype(np.float64) for m in network.w_layers]
    error = U * np.abs(values)                                 # the inputs were rounded to float32 once
    for layer, W in enumerate(weights):
        z = values @ W
        z_error = np.abs(error) @ np.abs(W) + gamma(W.shape[0]) * (np.abs(values) @ np.abs(W))
        values = np.tanh(z)
        error = (1 - values**2) * z_error + LIBM_ULPS * U * np.abs(values)
    # The affine mapping (1 + y) / 2 halves the error; the add and the halving round twice more.
    return (error / 2 + 2 * U).reshape(h, w, -1)


def assert_same_picture(a: np.ndarray, b: np.ndarray, bound_a: np.ndarray, bound_b: np.ndarray) -> None:
    """a and b are the same exact picture computed twice in float32: they differ by at most the two bounds."""
    excess = np.abs(a - b) - (bound_a + bound_b)
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, (f"pixel {worst}: {a[worst]} against {b[worst]}, more apart than float32 rounding "
                               f"allows ({bound_a[worst] + bound_b[worst]:.3g})")
