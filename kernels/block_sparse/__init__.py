"""The block-sparse MoE kernels of `block_sparse` (MegaBlocks' formulation, our own Triton code).

Where each product of the layer lives (S = block-sparse hidden activation, D = dense):
  layout    row blocks from the routing alignment (common.align), BSR indices   layout.bsr_layout_kernel
  forward   pre = x_sorted . W1^T on each expert's blocks, h = act(pre)   SDD  sdd.sdd_forward_kernel
            y_pair = h . W2^T (per pair rows)                              DSD  dsd.dsd_kernel
            out[t] = sum_s w[t, s] * y_pair[t*k + s]                       common.combine.combine_kernel
  backward  d(pre) = act'(pre) * (w * dy_sorted . W2) on the same blocks   SDD  sdd.sdd_backward_kernel
            dx_pair = d(pre) . W1                                          DSD  dsd.dsd_kernel
            dW2 = h^T . (w * dy per pair), dW1 = d(pre)^T . x_sorted     S^T D  wgrad.sparse_t_dense_kernel
Program -> block decoding shared by these kernels: blocks. Tile products go through common.matmul.mma
(launchers pass interpreter.dot_flags) and every fp32 value is stored through
common.rounding.cast_for_store (launchers pass interpreter.store_flags for the stored dtype): the
Triton interpreter's bf16 workarounds. Activation: common.activation. Tuning spaces: space (pure
Python). Launchers: moebench.impls.block_sparse. This package imports nothing on import (no triton).
"""
