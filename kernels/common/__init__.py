"""Kernel pieces both Triton families use (triton_grouped and block_sparse).

interpreter   the one Triton-interpreter check and its bf16 workaround flags (no triton import)
matmul        `mma`, the one tile product            rounding   `cast_for_store`, the one store cast
activation    the activation codes and the one activation epilogue (+ backward)
align         routing alignment kernels               combine    the deterministic combine kernel
hopper        the sm_90 resource model the tuning spaces prune against (pure Python)
pow2          power-of-two helpers of the spaces and launchers (pure Python)
"""
