// The CUDA built-ins the project's kernels use, for compiling their source as plain C++ with g++.
//
// gxx.py force-includes this header before a kernel's source and appends, for every
// `extern "C" __global__` kernel, a launcher that sets blockIdx/threadIdx and calls the kernel
// once per CUDA thread over the launch grid. Threads run one after another, so a kernel that
// needs threads to run together (__syncthreads, __shared__, atomics, warp shuffles) does not
// compile here: those names are deliberately left undefined.
#pragma once
#include <math.h>
#include <stddef.h>

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
// One translation unit per module, so plain statics act as the per-thread registers.
static uint3 blockIdx, threadIdx;
static dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __restrict__ __restrict

// Round-to-nearest intrinsics: single IEEE operations (x86-64 SSE, or any target with
// -ffp-contract=off, rounds each float operation once, as the GPU does).
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }

// The read-only cache changes speed, not values.
template <typename T> static inline T __ldg(const T* p) { return *p; }

// CUDA's fast intrinsics, as the accurate libm functions: the shim checks the kernels' logic, not
// these approximations' error (the kernels use the accurate functions unless built `fast`).
// (Macros, because glibc declares its own __sinf and __expf.)
#define __sinf(x) sinf(x)
#define __expf(x) expf(x)

// CUDA's integer min/max for device code.
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
