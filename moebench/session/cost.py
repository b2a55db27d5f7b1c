"""The session's cost model: seconds per plan item from FLOPs and bytes at the device's ceilings,
plus a compile allowance per new Triton kernel variant and fixed process overheads.

Rates are the device's nominal figures until the session measures its ceilings (the first step),
then the measured ones. Kernel variants come from the launches recorded on `meta` tensors
(moebench.compile_check.record_launches, keyed by variant_key the way Triton specialises a
compilation); a variant costs COMPILE_S the first time any item launches it, and nothing after.
The ledger (variants compiled, cells drawn) is filled in plan order, so an item's estimate counts
only what earlier items have not already paid for. Every constant below is an assumption to
check against the session's own `estimate vs actual` lines; the runner scales later estimates by
what it sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from moebench.ceilings import Ceilings
from moebench.spec import MoESpec
from moebench.tuning.precompile import MAX_AUTO_WORKERS

COMPILE_S = 1.7  # one Triton kernel variant (Triton's passes + ptxas), measured by compile_check on a CPU
MOE_EFFICIENCY = 0.4  # fraction of the GEMM / copy ceiling an MoE layer is assumed to reach (an upper bound on time)
REF_EFFICIENCY = 0.5  # the fp64 reference's per-expert GEMMs, same
SAMPLES = 57  # timed calls per bench row on CUDA: 5 warm-up, 1 sizing call, 1 capture, 50 samples
SAMPLE_FLOOR_S = 1e-3  # a CUDA-graph sample holds back-to-back calls to last about 1 ms (moebench.timing)
ROW_OVERHEAD_S = 0.05  # per bench row: graph capture, poisoning, parity checks, the row itself
CALL_OVERHEAD_S = 0.05  # per checked call: config lookup, allocations, poisoning, the comparison in fp64
SYNC_S = 3e-5  # a host synchronisation in the middle of a call
LOAD_S = 0.05  # loading a kernel compiled by another process from Triton's cache
TRITON_IMPLS = ("triton_grouped", "block_sparse")  # implementations whose launches can be recorded
OTHER_LAUNCHES = {"grouped_mm": 15, "vllm_fused": 6, "naive_loop_per_expert": 12}  # eager launches per call
VLLM_VARIANTS_PER_CELL = 2  # vLLM's own Triton kernels: stated, not recorded
POOL_START_S = 15.0  # spawning the compile workers (each imports torch and starts CUDA)


@dataclass(frozen=True)
class Rates:
    """The figures estimates are made from, and where they come from."""

    source: str
    gemm_tflops: float  # dense GEMM in the session's dtype
    fp64_tflops: float  # the reference's GEMMs
    copy_gbps: float  # device copy, bytes read + written
    launch_s: float  # one eager kernel launch (or torch op on the CPU)
    startup_s: float  # process start: imports, CUDA context
    interpreted: bool = False  # Triton kernels run in the interpreter (no compilation, slow programs)
    program_s: float = 0.0  # interpreter: seconds per program instance of a Triton kernel
    compile_s: float = COMPILE_S
    cpu_cores: int = 16  # the host's cores: compile workers and test shards (the H200 host has 16)

    def measured(self, ceilings: Ceilings, dtype: str) -> Rates:
        """These rates with the GEMM, fp64 and memory figures replaced by the ones measured (the memory
        ceiling: the better of a copy and a read pass, moebench.ceilings)."""
        gemm, fp64 = ceilings.gemm(dtype), ceilings.gemm("fp64")
        return replace(
            self,
            source=f"measured in this run ({ceilings.describe()})",
            gemm_tflops=gemm if gemm > 0 else self.gemm_tflops,
            fp64_tflops=fp64 if fp64 > 0 else self.fp64_tflops,
            copy_gbps=ceilings.mem_gbps if ceilings.mem_gbps > 0 else self.copy_gbps,
        )


NOMINAL: dict[str, Rates] = {
    # seen in this workplace: dense bf16 GEMM 790 TFLOP/s, copy 4,300 GB/s (read + write); fp64 by datasheet
    "h200": Rates("nominal NVIDIA H200: bf16 790 TFLOP/s, copy 4,300 GB/s, fp64 60 TFLOP/s", 790, 60, 4300, 6e-6, 20),
    "h100": Rates("nominal NVIDIA H100: bf16 790 TFLOP/s, copy 3,000 GB/s, fp64 60 TFLOP/s", 790, 60, 3000, 6e-6, 20),
    "gpu": Rates("nominal unknown GPU: bf16 300 TFLOP/s, copy 1,500 GB/s, fp64 10 TFLOP/s", 300, 10, 1500, 8e-6, 20),
    # the CPU: the Triton interpreter costs about 0.12-0.27 s per program on a shared 2-core VM
    "cpu": Rates("nominal CPU: 0.05 TFLOP/s, 5 GB/s, Triton interpreter 0.2 s per program", 0.05, 0.02, 5, 2e-5, 10,
                 interpreted=True, program_s=0.2, cpu_cores=2),
}  # fmt: skip


def nominal_rates(device_type: str, device_name: str = "") -> Rates:
    """The nominal figures for a device, by its name (an unknown GPU gets conservative ones)."""
    if device_type != "cuda":
        return NOMINAL["cpu"]
    name = device_name.lower()
    return next((NOMINAL[k] for k in ("h200", "h100") if k in name), NOMINAL["gpu"])


def expected_active_experts(num_experts: int, top_k: int, num_tokens: int) -> float:
    """Distinct experts T tokens hit under uniform routing: E * (1 - (1 - k/E)^T)."""
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** num_tokens)


@dataclass
class Ledger:
    """What earlier items already paid for: Triton variants compiled, specs and cells drawn, the
    compile pool started."""

    variants: set = field(default_factory=set)
    specs: set = field(default_factory=set)
    cells: set = field(default_factory=set)
    pool: bool = False


class CostModel:
    """Estimates in seconds. `ledger` is what the plan has paid for so far (see the module doc)."""

    def __init__(self, rates: Rates) -> None:
        self.rates = rates
        self.ledger = Ledger()
        self._launches: dict[tuple, tuple[int, int, frozenset]] = {}
        self._tune_configs: dict[tuple, int] = {}

    def reset(self) -> None:
        """An empty ledger: estimate a plan again from its start."""
        self.ledger = Ledger()

    # -- kernel launches and variants ------------------------------------------------------------
    def launches(self, impl: str, spec: MoESpec, num_tokens: int, backward: bool = False) -> tuple[int, int, frozenset]:
        """(launches, programs, variant keys) of one call of a Triton implementation."""
        key = (impl, spec, num_tokens, backward)
        if key not in self._launches:
            from moebench.compile_check.record import record_launches, variant_key

            recorded = record_launches(spec, num_tokens, impl=impl, backward=backward)
            programs = sum(math.prod(launch.grid) for launch in recorded)
            self._launches[key] = (len(recorded), programs, frozenset(map(variant_key, recorded)))
        return self._launches[key]

    def new_variants(self, impl: str, spec: MoESpec, num_tokens: int, backward: bool = False) -> int:
        """Variants this call compiles that no earlier item did (recorded as compiled)."""
        if impl not in TRITON_IMPLS:
            return VLLM_VARIANTS_PER_CELL if impl == "vllm_fused" and not self.rates.interpreted else 0
        keys = self.launches(impl, spec, num_tokens, backward)[2]
        new = keys - self.ledger.variants
        self.ledger.variants |= new
        return len(new)

    @property
    def compile_workers(self) -> int:
        """The precompile pool's size on the host: its cores but one, at most MAX_AUTO_WORKERS (as
        moebench.tuning.precompile.auto_workers, for the host the rates describe)."""
        return max(1, min(MAX_AUTO_WORKERS, self.rates.cpu_cores - 1))

    def compile_s(self, variants: int, parallel: bool = False) -> float:
        """Compiling `variants` new kernel variants: in the launching process one after another
        (each then loaded: LOAD_S), or spread over the pool (whose start is paid once)."""
        if variants == 0 or self.rates.interpreted:
            return 0.0
        if not parallel:
            return variants * self.rates.compile_s
        start = 0.0 if self.ledger.pool else POOL_START_S
        self.ledger.pool = True
        return start + variants * (self.rates.compile_s / self.compile_workers + LOAD_S)

    # -- one call of the layer --------------------------------------------------------------------
    def layer_s(self, impl: str, spec: MoESpec, num_tokens: int) -> float:
        """One call of `impl` on (spec, T): FLOPs and bytes at MOE_EFFICIENCY of the ceilings, plus
        its launches (the interpreter: its programs)."""
        r = self.rates
        active = expected_active_experts(spec.num_experts, spec.top_k, num_tokens)
        moved = spec.expert_weight_bytes(1) * active + 6 * num_tokens * spec.hidden * spec.dtype.itemsize
        work = max(spec.flops(num_tokens) / (r.gemm_tflops * 1e12), moved / (r.copy_gbps * 1e9)) / MOE_EFFICIENCY
        if impl in TRITON_IMPLS:
            launches, programs, _ = self.launches(impl, spec, num_tokens)
            return work + (programs * r.program_s if r.interpreted else launches * r.launch_s)
        if impl == "naive_loop":  # per hit expert: its ops, and a host sync (torch.where)
            return work + math.ceil(active) * (OTHER_LAUNCHES["naive_loop_per_expert"] * r.launch_s + SYNC_S)
        return work + OTHER_LAUNCHES.get(impl, 15) * r.launch_s

    # -- inputs and the fp64 reference -------------------------------------------------------------
    def cell_s(self, spec: MoESpec, num_tokens: int) -> float:
        """Drawing a cell (the spec's weights the first time) and its fp64 reference, once."""
        r, total = self.rates, 0.0
        if spec not in self.ledger.specs:
            self.ledger.specs.add(spec)
            # fp32 draws then the cast, expert by expert
            total += 5 * spec.expert_weight_bytes() / (r.copy_gbps * 1e9) + 12 * spec.num_experts * r.launch_s
        if (spec, num_tokens) not in self.ledger.cells:
            self.ledger.cells.add((spec, num_tokens))
            total += self.reference_s(spec, num_tokens)
        return total

    def reference_s(self, spec: MoESpec, num_tokens: int) -> float:
        """reference_moe: fp64 GEMMs plus each hit expert's weights upcast to fp64, one at a time."""
        r = self.rates
        active = expected_active_experts(spec.num_experts, spec.top_k, num_tokens)
        upcast = 5 * spec.expert_weight_bytes(1) * active / (r.copy_gbps * 1e9)
        math_s = spec.flops(num_tokens) / (r.fp64_tflops * 1e12 * REF_EFFICIENCY)
        return math_s + upcast + 15 * math.ceil(active) * r.launch_s

    # -- the session's items -----------------------------------------------------------------------
    def timing_s(self, impl: str, spec: MoESpec, num_tokens: int, graph: bool = True) -> float:
        """One bench row's timing (moebench.timing), the first checked call included."""
        t = self.layer_s(impl, spec, num_tokens)
        if self.rates.interpreted:
            return ROW_OVERHEAD_S + 6 * t  # the CPU: a first call, 2 warm-ups, 3 reps (quick timing)
        sample = max(t, min(SAMPLE_FLOOR_S, 32 * t)) if graph else t
        return ROW_OVERHEAD_S + 7 * t + SAMPLES * sample

    def verify_s(self, impls: list[str], spec: MoESpec, num_tokens: int) -> float:
        total = self.cell_s(spec, num_tokens)
        for impl in impls:
            total += self.compile_s(self.new_variants(impl, spec, num_tokens))
            total += CALL_OVERHEAD_S + 2 * self.layer_s(impl, spec, num_tokens)
        return total

    def grad_s(self, impl: str, spec: MoESpec, num_tokens: int) -> float:
        """A gradient case: its own draw, fp64 autograd of the reference, forward + backward."""
        compile_s = self.compile_s(self.new_variants(impl, spec, num_tokens, backward=True))
        ref = 3 * self.reference_s(spec, num_tokens) + 20 * spec.expert_weight_bytes() / (self.rates.copy_gbps * 1e9)
        return compile_s + ref + 4 * self.layer_s(impl, spec, num_tokens)

    def bench_s(self, impls: list[str], spec: MoESpec, num_tokens: int, graph: bool = True) -> float:
        total = self.cell_s(spec, num_tokens)
        for impl in impls:
            total += self.compile_s(self.new_variants(impl, spec, num_tokens))
            total += self.timing_s(impl, spec, num_tokens, graph)
        return total

    def precompile_s(self, cells: list[tuple[str, MoESpec, int]]) -> float:
        """Compiling the variants of `cells` (impl, spec, T) ahead, in the worker pool."""
        new = sum(self.new_variants(impl, spec, t) for impl, spec, t in cells if impl in TRITON_IMPLS)
        return self.compile_s(new, parallel=True)

    def tune_s(self, impl: str, spec: MoESpec, bucket: int, max_configs: int) -> float:
        """One tuning job: each active kernel's search (max_configs configs, each compiled ahead
        in the pool and timed like a bench row), then the winners' parity checks."""
        configs = self.tune_configs(impl, spec, bucket, max_configs)
        self.new_variants(impl, spec, bucket)
        compile_s = self.compile_s(configs, parallel=True)  # each config a new variant of its kernel
        check_tokens = bucket + ((bucket // 8) | 1)
        checks = self.reference_s(spec, bucket) + self.reference_s(spec, check_tokens)
        draw = 5 * spec.expert_weight_bytes() / (self.rates.copy_gbps * 1e9)
        return draw + compile_s + configs * self.timing_s(impl, spec, bucket) + 2 * checks

    def tune_configs(self, impl: str, spec: MoESpec, bucket: int, max_configs: int) -> int:
        """Configs a tuning job times: per kernel that runs at the bucket, its space (and default)
        up to max_configs."""
        key = (impl, spec, bucket, max_configs)
        if key not in self._tune_configs:
            from moebench.tuning.space import tunables

            kernels = [t for t in tunables(impl) if not t.backward]
            defaults = {t.kernel: t.default(spec, bucket) for t in kernels}
            active = [t for t in kernels if t.space(spec, bucket) and (t.active is None or t.active(defaults))]
            self._tune_configs[key] = sum(min(max_configs, len(t.space(spec, bucket)) + 1) for t in active)
        return self._tune_configs[key]

    def label(self) -> str:
        return f"{self.rates.source}; compile {self.rates.compile_s:g} s per kernel variant"
