"""The Triton kernels of `triton_grouped` (launchers: moebench.impls.triton_grouped).

  routing alignment   common.align (count, scan, scatter, fill: expert-sorted pairs padded to BLOCK_M)
  grouped path        gemm.grouped_gate_up_kernel (activation fused), gemm.grouped_down_kernel
                      (router weight fused), then common.combine.combine_kernel
  decode path         decode.decode_gate_up_kernel, decode.decode_down_kernel, then the combine
  shared tiles        tiles (program swizzle, the K loop of an expert product)
  tuning spaces       space (pure Python: the registry imports it without triton), fit (what fits sm_90)
This package imports nothing on import (no triton).
"""
