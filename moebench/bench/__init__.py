"""The benchmark behind `moebench bench`: time implementations, check them, write rows.

For every (spec, T, implementation) cell:
  * inputs: weights from `random_weights` (one fresh seed per spec) and x from `random_inputs`
    (one fresh seed per (spec, T)); every implementation of a cell sees the same tensors, and
    both seeds are recorded in the row so the cell can be rerun exactly;
  * parity: one run into a NaN-poisoned `out`, compared with the fp64 reference on those inputs;
    after each timing method `out` (re-poisoned first) holds the last timed run, which is checked
    again, so a row's parity is that of the very calls it timed (CUDA-graph replays included);
  * timing: `moebench.timing.time_fn` (warm-up, then the median, p20, p80 and the sample count; on
    the CPU adaptive sampling with process CPU time when single-threaded). On CUDA every
    implementation is timed eagerly (CUDA events) and, when it is graph_safe, also as CUDA-graph
    replays: two rows. Weight-bound cells (arithmetic intensity below the measured ridge point) are
    timed with the last-level cache flushed before each sample (moebench.coldcache): cache=cold;
  * metrics: TFLOP/s from spec.flops(T); weight GB/s from the bytes of the distinct experts the
    routing of this input hits (spec.expert_weight_bytes(n_active)); % of the dense-GEMM and memory
    ceilings measured in the same run (moebench.ceilings); speedup = baseline's best time / time.
    A row above 100% of a ceiling is status "invalid" (a measurement artefact, never a result).

Rows are long format (one measurement per row, see rows.ROW_COLUMNS) plus moebench.results.environment().
rows: the row schema and metrics; measure: one implementation on one cell; run: the whole run.
`measure_callable` and `make_row` let other tools (the export helper timing ONNX Runtime sessions)
add rows measured the same way.
"""

from moebench.bench.measure import BenchOptions, Cell, bench_impl, count_active_experts, make_cell, measure_callable
from moebench.bench.rows import (
    ROW_COLUMNS,
    STATUS_ERROR,
    STATUS_INVALID,
    STATUS_OK,
    STATUS_PARITY_FAIL,
    fill_speedups,
    make_row,
    row_metrics,
)
from moebench.bench.run import BenchResult, Selection, count_steps, default_baseline, run_bench, select_impls

__all__ = [
    "ROW_COLUMNS",
    "STATUS_ERROR",
    "STATUS_INVALID",
    "STATUS_OK",
    "STATUS_PARITY_FAIL",
    "BenchOptions",
    "BenchResult",
    "Cell",
    "Selection",
    "bench_impl",
    "count_active_experts",
    "count_steps",
    "default_baseline",
    "fill_speedups",
    "make_cell",
    "make_row",
    "measure_callable",
    "row_metrics",
    "run_bench",
    "select_impls",
]
