"""The frame grid's blend on the GPU: the whole grid on the device as uint8, mixed into one float32 frame there.

CuPy is imported only here, when a frame_grid node runs on the cupy backend. The kernel does the
numpy path's arithmetic in its order, each operation rounded once (__fmul_rn / __fadd_rn: no fused
multiply-adds), so its frames are the numpy path's bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from cppnviz.errors import ParamError

MAX_FRAMES = 8      # 2^d stored frames around a point of a grid of d <= 3 axes
THREADS = 256       # one thread per float of the frame: neighbouring threads read neighbouring bytes

_SOURCE = r"""
extern "C" __global__ void grid_blend(float* __restrict__ out, const unsigned char* __restrict__ frames,
                                      long long size, int count,
                                      long long at0, long long at1, long long at2, long long at3,
                                      long long at4, long long at5, long long at6, long long at7,
                                      float w0, float w1, float w2, float w3, float w4, float w5, float w6, float w7) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    const long long at[8] = {at0, at1, at2, at3, at4, at5, at6, at7};
    const float w[8] = {w0, w1, w2, w3, w4, w5, w6, w7};
    // As numpy: level * weight, then the products added in order, each rounded once.
    float v = __fmul_rn((float)__ldg(frames + at[0] + i), w[0]);
    #pragma unroll
    for (int k = 1; k < 8; ++k) {
        if (k < count) v = __fadd_rn(v, __fmul_rn((float)__ldg(frames + at[k] + i), w[k]));
    }
    // Weights summing to 1 may overshoot 1.0 by an ulp: the numpy path clips mixes of 2 or more too.
    out[i] = count > 1 ? fminf(v, 1.0f) : v;
}
"""


class GridBlend:
    """A grid's frames on the device and the frame they blend into: blend(levels) -> cupy (h, w, 3) float32."""

    def __init__(self, flat: np.ndarray, path: str):
        """flat: every stored frame, (frames, height, width, 3) uint8, uploaded once as it is."""
        import cupy

        try:
            self.frames = cupy.asarray(flat)
        except Exception as exc:
            if type(exc).__name__ != "OutOfMemoryError":   # cupy.cuda.memory.OutOfMemoryError
                raise
            raise ParamError(f"param 'backend': the grid '{path}' holds {flat.nbytes / 2**30:.2f} GiB of frames, "
                             f"more than the GPU has free ({exc}); set backend: numpy to play it from host "
                             "memory") from None
        self.size = int(np.prod(flat.shape[1:]))
        self.frame = cupy.empty(flat.shape[1:], cupy.float32)
        self.kernel = cupy.RawKernel(_SOURCE, "grid_blend")
        self.blocks = (math.ceil(self.size / THREADS),)

    def blend(self, levels: list[tuple[int, np.float32]]):
        """frame = sum of scale * stored frame, for the (frame index, float32 scale) pairs, in their order."""
        if not 1 <= len(levels) <= MAX_FRAMES:
            raise ValueError(f"expected 1 to {MAX_FRAMES} frames to blend, found {len(levels)}")
        pad = MAX_FRAMES - len(levels)
        offsets = [np.int64(index * self.size) for index, _ in levels] + [np.int64(0)] * pad
        scales = [np.float32(scale) for _, scale in levels] + [np.float32(0)] * pad
        self.kernel(self.blocks, (THREADS,), (self.frame, self.frames, np.int64(self.size), np.int32(len(levels)),
                                              *offsets, *scales))
        return self.frame
