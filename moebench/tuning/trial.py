"""How a tuning job judges one candidate config: the inputs it reuses, the timing (the whole
layer, the way the benchmark times it) and the parity checks against the fp64 reference (outputs,
or gradients for backward-pass kernels), with NaN-poisoned outputs and scratch memory as in the
parity gate. A CUDA error that breaks the context aborts the job instead of rejecting one config.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from moebench import registry
from moebench.ceilings import Ceilings, measure_ceilings
from moebench.coldcache import cache_state, count_active_experts
from moebench.parity import compare, expected_output, poison_allocator, poisoned_like
from moebench.reference import reference_moe
from moebench.spec import MoESpec
from moebench.timing import time_fn
from moebench.tuning.buckets import check_tokens
from moebench.tuning.search import SearchAborted
from moebench.weights import MoEWeights, random_inputs, random_weights

# repetitions per candidate: the benchmark's defaults on a GPU; on the CPU (interpreter) the
# timings mean nothing, so as few as exercise the path
CPU_TIMING = {"warmup": 1, "reps": 3}
FATAL_CUDA_ERRORS = ("illegal memory access", "unspecified launch failure", "device-side assert", "cuda error: ")


_WEIGHTS: dict[tuple, MoEWeights] = {}  # the last spec's weights, reused by the worker's next job


def tuning_weights(spec: MoESpec, device: torch.device, seed: int = 0) -> MoEWeights:
    """moebench.weights.random_weights (drawn on the device, one expert at a time), kept for the
    worker's next job on the same spec."""
    key = (spec, str(device))
    if key not in _WEIGHTS:
        _WEIGHTS.clear()
        _WEIGHTS[key] = random_weights(spec, device, seed)
    return _WEIGHTS[key]


class ForwardCheck:
    """Output parity of a candidate at the bucket's check token counts (fp64 references cached), with the
    parity gate's own check (moebench.parity.compare: whole tensor, every token row, non-finite values;
    near-tied routing accepted either way): a config that corrupts a few rows is rejected."""

    def __init__(self, info: registry.ImplInfo, weights: MoEWeights, bucket: int, device: torch.device) -> None:
        self.info, self.weights, self.device = info, weights, device
        self.tokens = check_tokens(bucket)
        self._cases: dict[int, tuple] = {}

    def prepare(self) -> None:
        """Compute the references up front: a failure there is the job's, not a config's."""
        for num_tokens in self.tokens:
            if num_tokens not in self._cases:
                self._cases[num_tokens] = self._make_case(num_tokens)

    def _make_case(self, num_tokens: int) -> tuple:
        x = random_inputs(self.weights.spec, num_tokens, self.device, seed=1000 + num_tokens)
        return x, expected_output(x, self.weights)

    def __call__(self, config: dict) -> str | None:
        for num_tokens in self.tokens:
            x, ref = self._cases[num_tokens]
            out = poisoned_like(x)
            poison_allocator(self.device, 4 * x.numel() * self.weights.spec.top_k * x.element_size() + (1 << 20))
            result = guard_fatal(self.info, x, self.weights, out=out, config=config, check=False)
            if result.data_ptr() != out.data_ptr():
                return "ignored out= (returned a different tensor)"
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            outcome = compare(result, ref, self.weights.spec.dtype)
            if not outcome.ok:
                return f"parity at T={num_tokens}: {outcome.message}"
        return None


def _leaves(values: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """Leaf tensors with the values of `values` (views where the dtype already matches: no copies)."""
    return [v.detach().to(dtype).requires_grad_(True) for v in values]


def _grads(out: torch.Tensor, leaves: list[torch.Tensor], dy: torch.Tensor) -> list[torch.Tensor]:
    """d<out, dy>/d leaf; zeros where the output does not depend on a leaf."""
    found = torch.autograd.grad(out, leaves, grad_outputs=dy, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(found, leaves)]


class GradCheck(ForwardCheck):
    """Gradient parity (dx, drouter, dw1, dw2) against the fp64 reference's autograd, for kernels
    of the backward pass. Needs the weights' fp64 copies and gradients: large presets may not fit."""

    def _make_case(self, num_tokens: int) -> tuple:
        spec = self.weights.spec
        x = random_inputs(spec, num_tokens, self.device, seed=1000 + num_tokens)
        dy = random_inputs(spec, num_tokens, self.device, seed=2000 + num_tokens)
        values = [x, *self.weights.parameters()]
        ref_leaves = _leaves(values, torch.float64)
        ref_out = reference_moe(ref_leaves[0], self.weights.with_parameters(ref_leaves[1:]))
        expected = [g.detach() for g in _grads(ref_out, ref_leaves, dy.to(torch.float64))]
        return values, dy, expected

    def __call__(self, config: dict) -> str | None:
        spec = self.weights.spec
        for num_tokens in self.tokens:
            values, dy, expected = self._cases[num_tokens]
            leaves = _leaves(values, spec.dtype)
            weights = self.weights.with_parameters(leaves[1:])
            out = guard_fatal(self.info, leaves[0], weights, config=config, check=False)
            got = guard_fatal(_grads, out, leaves, dy)
            for name, g, ref in zip(("x", *self.weights.parameter_names()), got, expected):
                outcome = compare(g, ref, spec.dtype, grad=True)
                if not outcome.ok:
                    return f"gradient parity d{name} at T={num_tokens}: {outcome.message}"
        return None


@functools.cache
def _ceilings(device: str, dtype: torch.dtype) -> Ceilings:
    """The device's quick ceilings, measured once per tuning process: the ridge point of the cache rule."""
    return measure_ceilings(device, (dtype,), quick=True)


class Timer:
    """Times the layer at the bucket's token count the way the benchmark does: forward only
    (CUDA graph when graph-safe), or forward + backward (eager) for backward-pass kernels; on a GPU with the
    benchmark's cache rule (moebench.coldcache.cache_state: weight-bound buckets cold, the weights evicted
    from L2 before every sample, so a config is not chosen for reading weights a warm cache held). `cache`
    says which ("warm" on the CPU, where the interpreter's timings only exercise the path)."""

    def __init__(self, info: registry.ImplInfo, weights: MoEWeights, bucket: int, device: torch.device) -> None:
        self.info, self.weights, self.device = info, weights, device
        self.x = random_inputs(weights.spec, bucket, device, seed=1)
        self.out = torch.empty_like(self.x)
        self.graph = device.type == "cuda" and info.graph_safe
        self.cache, flush = "warm", {}
        if device.type == "cuda":
            ceilings = _ceilings(str(device), weights.spec.dtype)
            active = count_active_experts(self.x, weights)
            self.cache, flush = cache_state("auto", weights.spec, bucket, active, ceilings, device)
        self.timing = {**({} if device.type == "cuda" else CPU_TIMING), **flush}
        self._backward: tuple | None = None

    def forward_ms(self, configs: dict) -> float:
        run = lambda: self.info(self.x, self.weights, out=self.out, config=configs, check=False)
        return guard_fatal(time_fn, run, self.device, use_graph=self.graph, **self.timing).median_ms

    def backward_ms(self, configs: dict) -> float:
        if self._backward is None:
            leaves = [v.detach().requires_grad_(True) for v in (self.x, *self.weights.parameters())]
            self._backward = (leaves, self.weights.with_parameters(leaves[1:]), torch.ones_like(self.x))
        leaves, weights, dy = self._backward

        def run() -> None:
            out = self.info(leaves[0], weights, config=configs, check=False)
            torch.autograd.grad(out, leaves, grad_outputs=dy, allow_unused=True)

        return guard_fatal(time_fn, run, self.device, use_graph=False, **self.timing).median_ms


def guard_fatal(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs); a CUDA error that breaks the context aborts the job (SearchAborted)
    instead of rejecting one config: every later launch in this process would fail too."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if any(marker in str(exc).lower() for marker in FATAL_CUDA_ERRORS):
            raise SearchAborted(f"{type(exc).__name__}: {exc}") from exc
        raise
