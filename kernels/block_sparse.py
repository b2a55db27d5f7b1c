"""The block-sparse MoE kernels in one place (MegaBlocks' formulation, our own Triton code).

Where each product of the layer lives (S = block-sparse hidden activation, D = dense):
  layout    row blocks from the routing alignment (moe_align), BSR indices bsr_layout.bsr_layout_kernel
  forward   pre = x_sorted . W1^T on each expert's blocks, h = act(pre)   SDD  bsr_sdd.sdd_forward_kernel
            y_pair = h . W2^T (per pair rows)                              DSD  bsr_dsd.dsd_kernel
            out[t] = sum_s w[t, s] * y_pair[t*k + s]                       combine.combine_kernel
  backward  d(pre) = act'(pre) * (w * dy_sorted . W2) on the same blocks   SDD  bsr_sdd.sdd_backward_kernel
            dx_pair = d(pre) . W1                                          DSD  bsr_dsd.dsd_kernel
            dW2 = h^T . (w * dy per pair), dW1 = d(pre)^T . x_sorted     S^T D  bsr_wgrad.sparse_t_dense_kernel
Tile products go through matmul.mma (launchers pass interpreter.dot_flags) and every fp32 value is
stored through rounding.cast_for_store (launchers pass interpreter.store_flags for the stored dtype):
the Triton interpreter's bf16 workarounds. Tuning spaces: bsr_space. Activation code: bsr_common.
"""

from moebench.kernels.bsr_common import ACTIVATION_CODES
from moebench.kernels.bsr_dsd import dsd_kernel
from moebench.kernels.bsr_layout import bsr_layout_kernel
from moebench.kernels.bsr_sdd import sdd_backward_kernel, sdd_forward_kernel
from moebench.kernels.bsr_wgrad import sparse_t_dense_kernel
from moebench.kernels.combine import combine_kernel

__all__ = [
    "ACTIVATION_CODES",
    "bsr_layout_kernel",
    "combine_kernel",
    "dsd_kernel",
    "sdd_backward_kernel",
    "sdd_forward_kernel",
    "sparse_t_dense_kernel",
]
