"""Power-of-two helpers shared by the tuning spaces and the launchers (pure Python, no triton)."""


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1): tl.arange and tile sizes need powers of two."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()
