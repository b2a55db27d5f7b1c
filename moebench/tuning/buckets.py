"""Token buckets: the fixed log-scale token counts that configs are tuned for.

A tuned config is recorded per bucket; a call with T tokens uses the config of the recorded bucket
nearest to T on a log scale (T=45 -> 32, T=46 -> 64: the boundary between two buckets is their
geometric mean). T=0 counts as T=1.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

from moebench.errors import MoEInputError

TOKEN_BUCKETS: tuple[int, ...] = tuple(2**i for i in range(17))  # 1, 2, 4, ..., 65536

# the buckets `moebench tune --device cpu` tunes when --tokens is not given (the interpreter is slow)
CPU_DEFAULT_BUCKETS: tuple[int, ...] = (1, 8, 64)


def nearest_bucket(num_tokens: int, buckets: Sequence[int] = TOKEN_BUCKETS) -> int:
    """The bucket nearest to `num_tokens` on a log scale; ties go to the larger bucket."""
    return buckets[BucketIndex(buckets).index(num_tokens)]


class BucketIndex:
    """Nearest-bucket lookup without logarithms per call: bisect on the geometric-mean boundaries.

    Built once per config file; `index(T)` is what every forward call pays.
    """

    __slots__ = ("buckets", "_bounds")

    def __init__(self, buckets: Iterable[int]) -> None:
        self.buckets = tuple(sorted(set(int(b) for b in buckets)))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f"buckets: expected positive token counts, got {self.buckets}")
        # T belongs to bucket i+1 when T >= sqrt(b_i * b_{i+1}) (a tie goes to the larger bucket)
        self._bounds = [math.sqrt(a * b) for a, b in zip(self.buckets, self.buckets[1:])]

    def index(self, num_tokens: int) -> int:
        return bisect.bisect_right(self._bounds, max(int(num_tokens), 1))

    def nearest(self, num_tokens: int) -> int:
        return self.buckets[self.index(num_tokens)]


def buckets_for(tokens: Iterable[int] | None, device_type: str = "cuda") -> list[int]:
    """The buckets to tune for the token counts asked for (each snapped to its nearest bucket).

    None: every bucket on a GPU, CPU_DEFAULT_BUCKETS on the CPU.
    """
    if tokens is None:
        return list(TOKEN_BUCKETS if device_type == "cuda" else CPU_DEFAULT_BUCKETS)
    tokens = list(tokens)
    if not tokens:
        raise MoEInputError("--tokens: expected at least one token count")
    if any(t < 1 for t in tokens):
        raise MoEInputError(f"--tokens: expected positive token counts, got {tokens}")
    return sorted({nearest_bucket(t) for t in tokens})


def check_tokens(bucket: int) -> tuple[int, ...]:
    """Token counts at which a bucket's winner is checked against the fp64 reference: the bucket
    itself and an odd count a little above it (catches configs whose masking is only right for
    powers of two). From bucket 8 up, the odd count is still served by the same bucket."""
    return (bucket, bucket + ((bucket // 8) | 1))
