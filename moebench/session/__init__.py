"""`moebench session`: a whole GPU session's work in one command, inside a deadline.

A GPU is lent rarely and briefly (one command of at most ten minutes, eight files back), so the
session runs everything that needs one in priority order and keeps every result it gets:

    config   what runs: presets, token counts, implementations (the one place that lists them)
    plan     the steps in priority order, as items the runner checks against the deadline
    cost     the cost model: FLOPs and bytes at the ceilings, compile time per kernel variant
    work     what each item does, through the library's verify, bench, tune and report functions
    pytest_step  the GPU and kernel tests, in parallel shards
    runner   the deadline loop; output: the files in $OUT; summary: summary.md
    unpack   files what came back under results/<device>/ and results/configs/
"""

from moebench.session.config import EXTRAS, Extra, SessionConfig, for_device

__all__ = ["EXTRAS", "Extra", "SessionConfig", "for_device"]
