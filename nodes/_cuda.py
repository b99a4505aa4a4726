"""The CPPN as one fused CUDA kernel per frame (CuPy), and the RGB -> YUV 4:2:0 conversion on the GPU.

One thread per pixel: it computes its own (row, col, r), runs every layer with the hidden
vector in registers and the weights broadcast from constant memory, and writes its RGB.
The per-frame feature term (features and cos t times their weights) is a `hidden`-long
vector computed on the host, exactly as the numpy path does. CuPy is imported only here,
and only when a graph asks for the GPU.

tests/test_cuda_shim.py compiles these kernels with g++ and runs them through this module's
own code against the numpy node on every CI run, GPU or not.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math

import numpy as np

log = logging.getLogger(__name__)

# 64 KiB of constant memory holds 16384 floats; larger networks read weights through the read-only cache.
CONSTANT_FLOATS = 16384
BLOCK = (32, 8)  # 256 threads: one warp per row segment, so neighbouring pixels share cache lines

# Where a network's weights live. CuPy loads one module per (source, options) and every network
# of one shape generates the same source, so they share that module's __constant__ weights:
#   shared:  constant memory of the shared module; a network copies its weights in before its
#            launch whenever another network's are there (one 64 KiB-at-most device copy, on the
#            stream the launch uses, so it lands after the last launch and before this one).
#   private: constant memory of a module of its own (the weights' digest is in its source): no
#            copies, but one more compilation for every distinct network.
#   global:  global memory through the read-only cache (__ldg): nothing shared, no copies; a load
#            per multiply-add instead of a constant-bank operand. Networks over 64 KiB always.
# Default shared: a single network never copies, the tiler's bands one small copy each per frame,
# and nothing compiles twice. Its GPU cost against the others is unmeasured (no GPU was lent to
# the task that chose it): bench/bench_gpu.py measures all three where a GPU is present.
WEIGHT_MEMORIES = ("shared", "private", "global")
WEIGHT_MEMORY = "shared"

# Accurate functions by default (tanhf and expf within 2 ulp, as numpy's float32 ones; sin within
# 2^-22, below), so the GPU's rounding stays as small as numpy's and the frames agree to 1/255
# wherever float32 itself does (README, "NVIDIA GPUs"). The fast intrinsics take one instruction
# each, but in a model of their documented error carried through the layers, tanh.approx.f32's
# 2^-11 moves the default 8 x 16 network by 16 levels or more and 8 x 32 by 59 or more, and
# sin.approx's 2^-20.5 moves sin 8 x 16 by about 3. FAST_MATH = True builds them; bench/bench_gpu.py
# measures both, frame time and levels off numpy, where a GPU is present.
FAST_MATH = False

_CLIP = "fminf(fmaxf(x, -1.0f), 1.0f)"
_ACTIVATIONS = {
    False: {"tanh": "tanhf(x)", "sin": "accurate_sin(x)", "gaussian": "expf(-(x) * (x))", "clip": _CLIP},
    # tanh.approx.f32 is one instruction on sm_75+ (relative error ~2^-11); tanhf elsewhere.
    True: {"tanh": "fast_tanh(x)", "sin": "__sinf(x)", "gaussian": "__expf(-(x) * (x))", "clip": _CLIP},
}

# Device functions the kernels share (a plain string: tests compile them on their own too).
FUNCTIONS = r"""
__device__ __forceinline__ float fast_tanh(float x) {
#if __CUDA_ARCH__ >= 750
    float y;
    asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return tanhf(x);
#endif
}

// sinf's huge-argument path (Payne-Hanek) inlined at every unit of a fully unrolled 8 x 32 network
// took NVRTC 27 s to compile; kept out of line, it costs a call only where |x| >= 1e5.
__device__ __noinline__ float far_sin(float x) { return sinf(x); }

// sin(x) = +-sin or +-cos of r = x - k pi/2, |r| <= pi/4. pi/2 is split in three (Cody-Waite):
// k * 1.5703125 is exact for |k| < 2^16, so the first subtraction is too; the other two parts
// go in through fused multiply-adds. Minimax polynomials on [-pi/4, pi/4] (Cephes' sinf
// coefficients). Within 2^-22 of sin x for |x| < 1e5 (tests/test_cuda_shim.py), as numpy's sin.
__device__ __forceinline__ float accurate_sin(float x) {
    if (!(fabsf(x) < 1.0e5f)) return far_sin(x);
    const float k = rintf(x * 0.636619772f);
    float r = x - k * 1.5703125f;
    r = fmaf(k, -4.837512969970703125e-4f, r);
    r = fmaf(k, -7.549789954891882e-8f, r);
    const float r2 = r * r;
    const float s = fmaf(fmaf(fmaf(-1.9515295891e-4f, r2, 8.3321608736e-3f), r2, -1.6666654611e-1f), r2 * r, r);
    const float c = fmaf(fmaf(fmaf(2.443315711809948e-5f, r2, -1.388731625493765e-3f), r2, 4.166664568298827e-2f),
                         r2 * r2, fmaf(-0.5f, r2, 1.0f));
    const int quadrant = (int)k & 3;
    const float v = (quadrant & 1) ? c : s;
    return (quadrant & 2) ? -v : v;
}
"""

_SOURCE = r"""
#define H {hidden}
#define HIDDEN_LAYERS {hidden_layers}
#define O {n_out}
#define SIGMOID {sigmoid}
#define VIGNETTE {vignette}
#define BIASES {biases}
#define BIAS_BASE {bias_base}
#define ACT(x) ({activation})
#define TANH(x) ({tanh})

{functions}
{weights_decl}

extern "C" __global__ void cppn_frame(float* __restrict__ out, const float* __restrict__ frame_bias,
                                      const float* __restrict__ w_global, int width, int height,
                                      float half_y, float half_x, float scale) {{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    if (i >= height || j >= width) return;
    // The numpy path's float32 coordinates, (i - n/2) / half * scale, rounded the same way.
    const float y = __fmul_rn(__fdiv_rn(__fsub_rn((float)i, 0.5f * height), half_y), scale);
    const float x = __fmul_rn(__fdiv_rn(__fsub_rn((float)j, 0.5f * width), half_x), scale);
    const float r = __fsqrt_rn(__fadd_rn(__fmul_rn(y, y), __fmul_rn(x, x)));

    float h[H], g[H];
    #pragma unroll
    for (int k = 0; k < H; ++k) {{
        const float z = W(k) * y + W(H + k) * x + W(2 * H + k) * r + __ldg(frame_bias + k);
        h[k] = ACT(z);
    }}
    int base = 3 * H;
    {layer_unroll}
    for (int layer = 0; layer < HIDDEN_LAYERS; ++layer, base += H * H) {{
        #pragma unroll {unroll}
        for (int k = 0; k < H; ++k) {{
            float z = 0.0f;
            #pragma unroll {unroll}
            for (int m = 0; m < H; ++m) z = fmaf(h[m], W(base + m * H + k), z);
#if BIASES
            z += W(BIAS_BASE + layer * H + k);  // after the sum, as the numpy path adds it
#endif
            g[k] = ACT(z);
        }}
        #pragma unroll
        for (int k = 0; k < H; ++k) h[k] = g[k];
    }}
    float o[3];
    #pragma unroll
    for (int c = 0; c < O; ++c) {{
        float z = 0.0f;
        #pragma unroll {unroll}
        for (int m = 0; m < H; ++m) z = fmaf(h[m], W(base + m * O + c), z);
#if BIASES
        z += W(BIAS_BASE + HIDDEN_LAYERS * H + c);
#endif
        // sigmoid(z) = (1 + tanh(z/2)) / 2, as the numpy path computes it.
        const float v = SIGMOID ? TANH(0.5f * z) : ACT(z);
        o[c] = 0.5f * v + 0.5f;
    }}
    float shade = 1.0f;
    if (VIGNETTE) shade = fmaxf(0.0f, 1.0f - r / scale);
    float* px = out + 3 * ((size_t)i * width + j);
    px[0] = o[0] * shade;
    px[1] = o[O == 3 ? 1 : 0] * shade;
    px[2] = o[O == 3 ? 2 : 0] * shade;
}}
"""

# One thread per 2x2 block: four Y samples, one Cb, one Cr, with the encoder's BT.709 limited-range
# arithmetic (same float32 coefficients, +0.5 then truncation, clipped), odd edges repeated.
_YUV_SOURCE = r"""
extern "C" __global__ void rgb_to_yuv420(const float* __restrict__ rgb, unsigned char* __restrict__ y_plane,
                                         unsigned char* __restrict__ u_plane, unsigned char* __restrict__ v_plane,
                                         int width, int height, int out_width, int out_height,
                                         float ky_r, float ky_g, float ky_b,
                                         float cb_r, float cb_g, float cb_b,
                                         float cr_r, float cr_g, float cr_b) {
    const int bx = blockIdx.x * blockDim.x + threadIdx.x;
    const int by = blockIdx.y * blockDim.y + threadIdx.y;
    if (2 * bx >= out_width || 2 * by >= out_height) return;
    float cb = 0.0f, cr = 0.0f;
    for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
            const int oy = 2 * by + dy, ox = 2 * bx + dx;
            const int sy = min(oy, height - 1), sx = min(ox, width - 1);
            const float* p = rgb + 3 * ((size_t)sy * width + sx);
            const float luma = ky_r * p[0] + ky_g * p[1] + ky_b * p[2];
            y_plane[(size_t)oy * out_width + ox] = (unsigned char)fminf(fmaxf(luma + 16.5f, 0.0f), 255.0f);
            cb += cb_r * p[0] + cb_g * p[1] + cb_b * p[2];
            cr += cr_r * p[0] + cr_g * p[1] + cr_b * p[2];
        }
    }
    const size_t c = (size_t)by * (out_width / 2) + bx;
    u_plane[c] = (unsigned char)fminf(fmaxf(cb + 128.5f, 0.0f), 255.0f);
    v_plane[c] = (unsigned char)fminf(fmaxf(cr + 128.5f, 0.0f), 255.0f);
}
"""


def import_cupy():
    """cupy, or None with the reason logged at debug level (not installed, no driver, no device)."""
    reason = gpu_unavailable()
    return None if reason else __import__("cupy")


def gpu_unavailable() -> str | None:
    """Why the CuPy backend cannot run here, or None when it can."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything at import
        return f"cupy is not installed ({type(exc).__name__}: {exc}); pip install 'cppnviz[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, or a driver older than the runtime
        return f"no usable CUDA driver ({type(exc).__name__}: {exc})"
    return None if count > 0 else "no CUDA device found"


def cppn_source(*, hidden: int, layers: int, n_out: int, activation: str, sigmoid: bool, vignette: bool,
                n_weights: int, constant: bool = True, fast_math: bool = False, biases: bool = False) -> str:
    """The CUDA source of the fused kernel for one network shape (compiled once per shape by CuPy).

    constant: weights in __constant__ memory (up to CONSTANT_FLOATS of them), else read from global memory.
    biases: the packed weights end with the hidden layers' and the output's biases (fitted looks; layer 1's
    is in the per-frame term); n_weights counts them.
    """
    bias_base = n_weights - ((layers - 2) * hidden + n_out if biases else 0)
    in_constant = constant and n_weights <= CONSTANT_FLOATS
    weights_decl = (f"__constant__ float c_weights[{n_weights}];\n#define W(index) c_weights[index]" if in_constant
                    else "#define W(index) __ldg(w_global + (index))")
    functions = _ACTIVATIONS[fast_math]
    return _SOURCE.format(hidden=hidden, hidden_layers=layers - 2, n_out=n_out, sigmoid=int(sigmoid),
                          vignette=int(vignette), biases=int(biases), bias_base=bias_base,
                          activation=functions[activation], tanh=functions["tanh"],
                          functions=FUNCTIONS, weights_decl=weights_decl,
                          # Unrolling everything keeps h[] in registers; past 64 units it only bloats the code.
                          unroll="" if hidden <= 64 else "4",
                          # Unrolled layers make every weight offset a constant, so each FMA reads its
                          # weight straight from the constant bank instead of a separate load.
                          layer_unroll="#pragma unroll" if in_constant else "")


def pack_weights(w_layers: list[np.ndarray], biases: list[np.ndarray] | None = None) -> np.ndarray:
    """The kernel's weight layout: layer 1's spatial rows (3, H), each hidden (H, H), then (H, O), row-major;
    then the biases of the layers after the first, if any."""
    first = np.asarray(w_layers[0], np.float32)[:3]
    return np.concatenate([first.ravel()] + [np.asarray(w, np.float32).ravel() for w in w_layers[1:]]
                          + [np.asarray(b, np.float32).ravel() for b in biases or ()])


# Which network's weights each shared __constant__ symbol holds now: symbol address -> network number
# (numbers, not ids: a new network may get a dead one's id and would skip its copy).
_constant_holder: dict[int, int] = {}
_network_numbers = itertools.count()


class CudaNetwork:
    """A CPPN frame on the GPU: render(frame_bias) -> cupy (height, width, 3) float32, reused every frame.

    Networks render on one stream (CuPy's current one), as every node here does: a network's weight
    copy and its launch are ordered after the other networks' launches only on the same stream.
    """

    def __init__(self, w_layers: list[np.ndarray], width: int, height: int, *, activation: str, mapping: str,
                 half_y: float, half_x: float, scale: float, vignette: bool, memory: str | None = None,
                 fast_math: bool | None = None, biases: list[np.ndarray] | None = None):
        import cupy

        self.cupy = cupy
        hidden = w_layers[0].shape[1]
        n_out = w_layers[-1].shape[1]
        packed = pack_weights(w_layers, biases)
        memory = memory or WEIGHT_MEMORY
        if memory not in WEIGHT_MEMORIES:
            raise ValueError(f"weight memory {memory!r}: expected one of {', '.join(WEIGHT_MEMORIES)}")
        self.memory = "global" if packed.size > CONSTANT_FLOATS else memory
        source = cppn_source(hidden=hidden, layers=len(w_layers), n_out=n_out, activation=activation,
                             sigmoid=mapping == "sigmoid", vignette=vignette, n_weights=packed.size,
                             constant=self.memory != "global", fast_math=FAST_MATH if fast_math is None else fast_math,
                             biases=biases is not None)
        if self.memory == "private":
            source += f"// weights {hashlib.sha256(packed.tobytes()).hexdigest()}\n"  # a module of its own
        self.module = cupy.RawModule(code=source, options=("--std=c++14",))
        self.kernel = self.module.get_function("cppn_frame")
        self.weights = cupy.asarray(packed)
        self.symbol = self.module.get_global("c_weights") if self.memory != "global" else None
        self.number = next(_network_numbers)
        self.bias = cupy.zeros(hidden, cupy.float32)
        self.frame = cupy.empty((height, width, 3), cupy.float32)
        self.width, self.height = width, height
        self.args = (np.float32(half_y), np.float32(half_x), np.float32(scale))
        self.grid = (math.ceil(width / BLOCK[0]), math.ceil(height / BLOCK[1]))

    def render(self, frame_bias: np.ndarray):
        """One frame from the per-frame layer-1 term (host float32, `hidden` values)."""
        if self.symbol is not None and _constant_holder.get(self.symbol.ptr) != self.number:
            # On the current stream, as the launch below: after the last launch that read the symbol.
            self.symbol.copy_from_device_async(self.weights.data, self.weights.nbytes)
            _constant_holder[self.symbol.ptr] = self.number
        self.bias.set(np.asarray(frame_bias, np.float32))
        self.kernel(self.grid, BLOCK, (self.frame, self.bias, self.weights, np.int32(self.width),
                                       np.int32(self.height), *self.args))
        return self.frame


class GpuYuv420:
    """cupy RGB frames -> planar YUV 4:2:0 on the GPU, copied to the host through pinned buffers."""

    def __init__(self, height: int, width: int, luma: np.ndarray, cb_pair: np.ndarray, cr_pair: np.ndarray):
        import cupy

        self.cupy = cupy
        self.height, self.width = height, width
        self.out_height, self.out_width = height + height % 2, width + width % 2
        h, w = self.out_height, self.out_width
        self.kernel = cupy.RawKernel(_YUV_SOURCE, "rgb_to_yuv420")
        self.device = cupy.empty(h * w * 3 // 2, cupy.uint8)  # Y, then U, then V, contiguous
        pinned = cupy.cuda.alloc_pinned_memory(self.device.nbytes)
        self.host = np.frombuffer(pinned, np.uint8, self.device.size)
        self.planes = (self.host[:h * w].reshape(h, w), self.host[h * w:h * w * 5 // 4].reshape(h // 2, w // 2),
                       self.host[h * w * 5 // 4:].reshape(h // 2, w // 2))
        # The encoder's coefficients; its pair rows hold each pixel's weights twice, with the 1/4 folded in.
        self.coefficients = tuple(np.float32(v) for v in (*luma, *cb_pair[:3], *cr_pair[:3]))
        self.grid = (math.ceil(w // 2 / BLOCK[0]), math.ceil(h // 2 / BLOCK[1]))

    def convert(self, rgb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Convert on the GPU and return host (Y, U, V) views of the pinned buffer (valid until the next call)."""
        h, w = self.out_height, self.out_width
        d = self.device
        self.kernel(self.grid, BLOCK, (rgb, d[:h * w], d[h * w:h * w * 5 // 4], d[h * w * 5 // 4:],
                                       np.int32(self.width), np.int32(self.height), np.int32(w), np.int32(h),
                                       *self.coefficients))
        stream = self.cupy.cuda.get_current_stream()
        d.get(out=self.host, stream=stream)
        stream.synchronize()
        return self.planes
