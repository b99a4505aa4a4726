"""The CUDA path without a GPU: kernels compiled by g++ (gxx.py, cuda_shim.h) behind a strict CuPy stand-in."""
