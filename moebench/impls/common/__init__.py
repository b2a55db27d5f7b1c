"""Launchers of the Triton grouped-GEMM MoE (kernels live in moebench.kernels)."""
