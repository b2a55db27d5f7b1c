"""Triton kernels of moebench (installed as `moebench.kernels`).

Only `@triton.jit` code and its tuning spaces live here; launchers live in moebench/.
Importing this package needs triton; import it lazily from implementations.
"""
