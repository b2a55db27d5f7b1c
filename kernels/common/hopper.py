"""The sm_90 (H100, H200) resource model every tuning space prunes against, in one place.

Pure Python (no triton import): the registry imports the spaces to register the tunables.
Each figure is a hardware limit or a bound checked with ptxas -v for sm_90 (moebench.compile_check);
a space that keeps extra headroom states it as its own named term on top of these.
"""

# The most dynamic shared memory one thread block may opt into: 227 KiB of the SM's 228 KiB.
SMEM_LIMIT_BYTES = 232_448

# fp32 accumulator registers per thread a tile may need; beyond this (of the 255 a thread can
# address) ptxas spills get likely once operands and addresses are counted.
ACC_REGS_PER_THREAD = 128

# A kernel whose epilogue combines several live fp32 tiles (swiglu's gate and up, or those and the
# gradient) needs about a quarter more registers than its accumulators alone: ptxas spilled at
# exactly ACC_REGS_PER_THREAD without this factor.
MULTI_TILE_EPILOGUE_REGS = 1.25

# Streaming multiprocessors of an H100 SXM and an H200.
SM_COUNT = 132
