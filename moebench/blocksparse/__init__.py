"""MegaBlocks-style block-sparse MoE: topology, ops and autograd (kernels live in moebench.kernels)."""
