"""block_sparse: topology vs a plain torch construction, padding exactly zero, forward parity over
the gate's edge cases and tiny presets at block sizes 16 and 32, configs and tunables.
Gradients are in tests/test_gradparity.py."""

import pytest
import torch

from moebench import registry
from moebench.errors import MoEInputError
from moebench.impls.block_sparse import ops
from moebench.impls.block_sparse.config import resolve_configs
from moebench.impls.block_sparse.topology import build_topology, with_transposed
from moebench.impls.common.align import max_blocks_for
from moebench.impls.common.combine import combine
from moebench.impls.common.layer_ops import layer_op_args
from moebench.kernels.common.interpreter import bf16_cast_truncates, interpreting, store_flags
from moebench.parity import Case, compare, edge_cases, make_case_inputs, run_case
from moebench.presets import get_preset
from moebench.reference import reference_moe
from moebench.routing import route
from moebench.tuning import resolve_config, tunables
from moebench.weights import MoEWeights

IMPL = registry.get("block_sparse")
SEED = 1234  # fixed inputs: these tests must not depend on luck; `moebench verify` draws fresh ones


def _config(block: int) -> dict:
    return {"topology": {"block": block}}


# ---------------------------------------------------------------- topology


def _torch_layout(topk_ids: torch.Tensor, num_experts: int, block: int) -> tuple[list[int], list[int]]:
    """Padded rows (pair id or -1) and the expert of each row block, built with a plain loop."""
    flat = topk_ids.reshape(-1).tolist()
    rows, row_block_expert = [], []
    for expert in range(num_experts):
        pairs = [p for p, e in enumerate(flat) if e == expert]
        if not pairs:
            continue
        padded = pairs + [-1] * (-len(pairs) % block)
        rows += padded
        row_block_expert += [expert] * (len(padded) // block)
    return rows, row_block_expert


def _topk_ids(num_tokens: int, top_k: int, num_experts: int, mode: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(num_tokens, num_experts, generator=g)
    if mode == "empty":
        scores[:, num_experts // 2 :] -= 10  # the upper half of the experts gets no token
    if mode == "one":
        scores[:, 0] += 10
    return torch.topk(scores, top_k, dim=1).indices


@pytest.mark.parametrize(
    "num_tokens, top_k, num_experts, inter, block, mode",
    [
        (0, 2, 4, 48, 16, "random"),
        (1, 2, 4, 48, 16, "random"),
        (37, 2, 4, 48, 16, "random"),  # T*k not a multiple of the block; I not either
        (49, 2, 6, 40, 16, "empty"),
        (35, 2, 4, 52, 32, "one"),
        (50, 3, 3, 64, 32, "random"),  # k = E, I a multiple of the block
        (64, 4, 16, 32, 16, "random"),
    ],
)
@pytest.mark.parametrize("transposed_later", [False, True])
def test_topology_matches_a_torch_construction(
    num_tokens, top_k, num_experts, inter, block, mode, transposed_later, triton_device
):
    ids = _topk_ids(num_tokens, top_k, num_experts, mode, seed=num_tokens).to(triton_device)
    if transposed_later:  # inference builds the forward layout only; training adds the rest
        forward_only = build_topology(ids, num_experts, inter, block, transposed=False)
        assert not forward_only.has_transposed and forward_only.block_index_t is None
        topo = with_transposed(forward_only)
    else:
        topo = build_topology(ids, num_experts, inter, block)
    rows, row_block_expert = _torch_layout(ids.cpu(), num_experts, block)
    nb, used_rb = -(-inter // block), len(row_block_expert)

    assert topo.max_row_blocks == max_blocks_for(num_tokens * top_k, num_experts, block) >= used_rb
    assert int(topo.num_row_blocks) == used_rb
    # every pair exactly once, expert-sorted and stable, padding -1
    expected_rows = rows + [-1] * (topo.max_rows - len(rows))
    assert topo.row_to_pair.tolist() == expected_rows
    assert sorted(p for p in rows if p >= 0) == list(range(num_tokens * top_k))
    assert topo.row_block_expert.tolist() == row_block_expert + [-1] * (topo.max_row_blocks - used_rb)
    # padding is at most block - 1 rows per expert that has tokens
    assert len(rows) - num_tokens * top_k <= len(set(row_block_expert)) * (block - 1)

    # BSR, row-major: row block rb holds column blocks e*nb .. e*nb + nb - 1
    expected_cols = [e * nb + j for e in row_block_expert for j in range(nb)]
    expected_brows = [rb for rb in range(used_rb) for _ in range(nb)]
    unused = [-1] * (topo.max_blocks - len(expected_cols))
    assert topo.block_cols.tolist() == expected_cols + unused
    assert topo.block_rows.tolist() == expected_brows + unused
    assert topo.row_offsets.tolist() == [min(rb, used_rb) * nb for rb in range(topo.max_row_blocks + 1)]

    # transposed index: per column block, the same blocks in row order; unused entries last
    offsets_t = topo.column_offsets_t.tolist()
    assert offsets_t[0] == 0 and offsets_t[-1] == len(expected_cols)
    seen = []
    for column in range(num_experts * nb):
        expert, j = divmod(column, nb)
        entries = range(offsets_t[column], offsets_t[column + 1])
        row_blocks = [rb for rb, e in enumerate(row_block_expert) if e == expert]
        assert [topo.block_rows_t[t].item() for t in entries] == row_blocks
        assert [topo.block_index_t[t].item() for t in entries] == [rb * nb + j for rb in row_blocks]
        for t in entries:
            b = topo.block_index_t[t].item()
            assert topo.block_cols[b].item() == column and topo.block_rows[b].item() == topo.block_rows_t[t].item()
        seen += [topo.block_index_t[t].item() for t in entries]
    assert sorted(seen) == list(range(len(expected_cols)))
    assert topo.block_index_t[len(seen) :].eq(-1).all() and topo.block_rows_t[len(seen) :].eq(-1).all()


def test_bad_block_size_is_rejected(triton_device):
    ids = torch.zeros(3, 1, dtype=torch.int64, device=triton_device)
    for block in (8, 24, 512, "16"):
        with pytest.raises(MoEInputError, match="block"):
            build_topology(ids, 2, 16, block)
    spec = get_preset("tiny", "fp32")
    weights, x = make_case_inputs(spec, Case("T=5", 5), triton_device, SEED)
    with pytest.raises(MoEInputError, match="topology"):
        IMPL(x, weights, config=_config(48))
    with pytest.raises(MoEInputError, match="BLOCK_M"):
        IMPL(x, weights, config={"sdd": {"BLOCK_M": 20, "BLOCK_N": 16, "BLOCK_K": 16}})


# ---------------------------------------------------------------- padding is exactly zero


def test_sdd_blocks_hold_the_activation_and_exact_zeros_in_padding(triton_device):
    spec = get_preset("tiny-odd", "fp32")  # I = 52: the last column block is partly padding
    weights, x = make_case_inputs(spec, Case("T=21", 21), triton_device, SEED)
    _, ids = route(x, weights)
    block = 16
    topo = build_topology(ids, spec.num_experts, spec.intermediate, block)
    configs = resolve_configs(spec, x.shape[0], x.device, _config(block), backward=False)
    h, pre = ops.sdd_forward(x, weights.w1, topo, spec, configs["sdd"], save_pre=True)

    nb = topo.blocks_per_row
    used = int(topo.num_row_blocks) * nb
    dense = torch.zeros(topo.max_rows, nb * block, device=triton_device)  # each padded row's activation
    for b in range(used):
        rb, j = topo.block_rows[b].item(), topo.block_cols[b].item() % nb
        dense[rb * block : (rb + 1) * block, j * block : (j + 1) * block] = h[b]
    pairs = topo.row_to_pair[: dense.shape[0]].long()
    padding = pairs < 0
    assert padding.any() and dense[padding].eq(0).all()
    assert dense[:, spec.intermediate :].eq(0).all()
    assert pre[:, :used].reshape(2, used, -1).isfinite().all()

    experts = ids.reshape(-1)[pairs.clamp(min=0)]
    tokens = pairs.clamp(min=0) // spec.top_k
    for row in torch.nonzero(~padding).flatten().tolist():
        e, t = experts[row].item(), tokens[row].item()
        pre_row = weights.w1[e].double() @ x[t].double()
        expected = torch.nn.functional.silu(pre_row[: spec.intermediate]) * pre_row[spec.intermediate :]
        torch.testing.assert_close(dense[row, : spec.intermediate].double(), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- forward parity

_PRESETS = ("tiny", "tiny-odd", "tiny-k-eq-e", "tiny-gelu", "tiny-relu")


def _assert_all_pass(spec, cases, block, device):
    failures = []
    for case in cases:
        outcome = run_case_with_config(spec, case, block, device)
        if not outcome.ok:
            failures.append(f"{case.name}: {outcome.error or outcome.result}")
    assert not failures, f"{spec.describe()} block={block}: " + "; ".join(failures)


def run_case_with_config(spec, case, block, device):
    """run_case with the block pinned through MOEBENCH_PIN_CONFIG (run_case passes no config)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOEBENCH_PIN_CONFIG", f'{{"block_sparse/topology": {{"block": {block}}}}}')
        assert resolve_configs(spec, case.num_tokens, device, None, backward=False)["topology"] == {"block": block}
        return run_case(IMPL, spec, case, device, seed=SEED)


@pytest.mark.parametrize(
    "preset, dtype, block",
    [
        ("tiny", "fp32", 16),
        ("tiny-odd", "fp32", 16),
        ("tiny-k-eq-e", "fp32", 32),
        ("tiny-gelu", "fp32", 32),
        ("tiny-relu", "fp32", 32),
        ("tiny", "fp16", 32),
        ("tiny", "bf16", 32),
    ],
)
def test_forward_edge_cases(preset, dtype, block, triton_device):
    spec = get_preset(preset, dtype)
    _assert_all_pass(spec, edge_cases(spec), block, triton_device)  # T = 0, 1, 37, 49 (empty experts), 35 (one expert)


@pytest.mark.parametrize("preset", _PRESETS)
def test_forward_half_precision_block16(preset, triton_device):
    for dtype in ("bf16", "fp16") if preset == "tiny-odd" else ("bf16",):
        spec = get_preset(preset, dtype)
        _assert_all_pass(spec, [Case("T=37", 37)], 16, triton_device)


def test_default_config_and_sub_block_tiles(triton_device):
    """Default block (64 for tiny I), and block 32 with 16-wide tiles (several programs per block,
    several K steps per block) give the same answer as the reference."""
    spec = get_preset("tiny-odd", "fp32")
    weights, x = make_case_inputs(spec, Case("T=21", 21), triton_device, SEED)
    assert resolve_config("block_sparse", "topology", spec, 21, x.device) == {"block": 64}
    ref = reference_moe(x, weights)
    small_tiles = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}
    config = {"topology": {"block": 32}, "sdd": small_tiles, "dsd": small_tiles}
    for cfg in (None, config):
        torch.testing.assert_close(IMPL(x, weights, config=cfg).double(), ref, rtol=1e-5, atol=1e-5)


def test_inference_and_training_paths_agree_and_out_is_written(triton_device):
    spec = get_preset("tiny", "fp32")
    weights, x = make_case_inputs(spec, Case("T=19", 19), triton_device, SEED)
    inference = IMPL(x, weights, config=_config(16))
    x_leaf = x.clone().requires_grad_(True)
    out = torch.full_like(x, float("nan"))
    training = IMPL(x_leaf, weights, out=out, config=_config(16))
    assert training.data_ptr() == out.data_ptr() and training.requires_grad
    torch.testing.assert_close(training.detach(), inference, rtol=1e-6, atol=1e-6)
    training.sum().backward()
    assert x_leaf.grad is not None and x_leaf.grad.isfinite().all()


# ---------------------------------------------------------------- bf16 stores


def test_bf16_stores_round_to_nearest_even(triton_device):
    """bf16 outputs are torch's round-to-nearest-even of the fp32 values, ties included. Under the
    Triton 3.9 interpreter (its fp32->bf16 cast truncates) that takes the ROUND_BF16 workaround."""
    if interpreting() and bf16_cast_truncates():
        assert store_flags(torch.bfloat16)["ROUND_BF16"] and not store_flags(torch.float32)["ROUND_BF16"]
    num_tokens, hidden = 7, 40
    pair_rows = torch.randn(num_tokens * 2, hidden, generator=torch.Generator().manual_seed(SEED))
    ties = 1.0 + torch.tensor([1.0, 3.0, 5.0, 7.0]) * 2.0**-8  # halfway between two bf16 values
    pair_rows[0, :4], pair_rows[1, :4] = ties, 0.0
    pair_rows = pair_rows.to(triton_device)
    out = torch.empty(num_tokens, hidden, dtype=torch.bfloat16, device=triton_device)
    combine(pair_rows, None, out, top_k=2)  # fp32 sum of the two slots, stored as bf16
    assert torch.equal(out, (pair_rows[0::2] + pair_rows[1::2]).to(torch.bfloat16))


# ---------------------------------------------------------------- tunables


def test_tunables_are_registered_with_valid_spaces(triton_device):
    kernels = {t.kernel: t for t in tunables("block_sparse")}
    assert set(kernels) == {"topology", "sdd", "dsd", "sdd_bwd", "dsd_bwd", "wgrad"}
    for preset in ("tiny", "mixtral-8x7b", "qwen3-30b-a3b", "gpt-oss-20b"):
        for dtype in ("fp32", "bf16"):
            spec = get_preset(preset, dtype)
            for name, tunable in kernels.items():
                space = tunable.space(spec, 4096)
                assert space, (preset, name)
                for cfg in [*space, tunable.default(spec, 4096)]:
                    if name == "topology":
                        ids = torch.zeros(1, 1, dtype=torch.int64, device=triton_device)
                        build_topology(ids, 1, 16, cfg["block"])
                    else:
                        ops.launch_params(name, cfg, block=128, hidden=spec.hidden)
    big = get_preset("mixtral-8x7b", "bf16")
    assert kernels["topology"].default(big, 4096) == {"block": 128}
    assert len(kernels["sdd"].space(big, 4096)) < 100  # pruned


@pytest.mark.gpu
@pytest.mark.parametrize("block", [64, 128])
def test_gpu_forward_parity_without_host_sync_and_in_a_cuda_graph(block):
    spec = get_preset("small-8x2", "bf16")
    for case in (Case("T=1", 1), Case("T=300", 300), Case("all on expert 0", 257, always=(0,))):
        weights, x = make_case_inputs(spec, case, "cuda", SEED)
        out = torch.empty_like(x)
        run = lambda: IMPL(x, weights, out=out, config=_config(block), check=False)  # noqa: B023
        run()  # compile outside the checks
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        result = compare(out, reference_moe(x, weights), spec.dtype)
        assert result.ok, f"{case.name}: {result}"
        out.fill_(float("nan"))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        graph.replay()
        torch.cuda.synchronize()
        assert compare(out, reference_moe(x, weights), spec.dtype).ok, case.name


def test_backward_kernels_are_tuned_as_backward():
    from moebench.impls.block_sparse.config import BACKWARD_KERNELS, IMPL
    from moebench.kernels.block_sparse.space import KERNELS
    from moebench.tuning import tunables

    flags = {t.kernel: t.backward for t in tunables(IMPL)}
    assert set(flags) == set(KERNELS)
    assert set(KERNELS) >= BACKWARD_KERNELS
    assert {k for k, is_bwd in flags.items() if is_bwd} == BACKWARD_KERNELS


# ---------------------------------------------------------------- custom ops (inference)


def test_custom_ops_pass_opcheck_and_match_the_reference(triton_device):
    from moebench.impls.block_sparse.op import encode_config

    spec = get_preset("tiny", "fp32")
    weights, x = make_case_inputs(spec, Case("T=9", 9), triton_device, SEED)
    args = layer_op_args(x, weights, encode_config(_config(16)))
    torch.library.opcheck(torch.ops.moebench.block_sparse_moe.default, args)
    out = torch.full_like(x, float("nan"))
    out_args = layer_op_args(x, weights, encode_config(_config(16)), out=out)
    torch.library.opcheck(torch.ops.moebench.block_sparse_moe_out.default, out_args)
    torch.ops.moebench.block_sparse_moe_out(*out_args)  # opcheck works on copies
    assert compare(out, reference_moe(x, weights), spec.dtype).ok


def test_torch_export_sees_one_block_sparse_op(triton_device):
    spec = get_preset("tiny", "fp32")
    weights, x = make_case_inputs(spec, Case("T=5", 5), triton_device, SEED)

    class Layer(torch.nn.Module):
        def forward(self, x, router, w1, w2):
            return torch.ops.moebench.block_sparse_moe(*layer_op_args(x, MoEWeights(spec, router, w1, w2)))

    program = torch.export.export(Layer(), (x, *weights.parameters()))
    calls = [node.target for node in program.graph.nodes if node.op == "call_function"]
    assert calls == [torch.ops.moebench.block_sparse_moe.default]


def test_inference_goes_through_the_op_and_training_does_not(monkeypatch, triton_device):
    calls = []
    real = torch.ops.moebench.block_sparse_moe_out
    monkeypatch.setattr(torch.ops.moebench, "block_sparse_moe_out", lambda *a: calls.append(a) or real(*a))
    spec = get_preset("tiny", "fp32")
    weights, x = make_case_inputs(spec, Case("T=7", 7), triton_device, SEED)
    out = torch.full_like(x, float("nan"))
    IMPL(x, weights, out=out)
    assert len(calls) == 1 and compare(out, reference_moe(x, weights), spec.dtype).ok
    IMPL(x.clone().requires_grad_(True), weights).sum().backward()
    assert len(calls) == 1  # the gradient path is the autograd.Function, not the op


def test_op_config_errors_name_the_argument():
    from moebench.impls.block_sparse.op import encode_config

    with pytest.raises(MoEInputError, match="unknown kernel"):
        encode_config({"gate_up": {"BLOCK_M": 64}})
    with pytest.raises(MoEInputError, match="expected a dict"):
        encode_config(["sdd"])
    assert encode_config(None) == "" and encode_config({}) == ""


def test_training_path_refuses_an_unknown_kernel_too(triton_device):
    """The gradient path resolves its own configs: a misspelt kernel must fail there as well."""
    spec = get_preset("tiny", "fp32")
    weights, x = make_case_inputs(spec, Case("T=5", 5), triton_device, SEED)
    with pytest.raises(MoEInputError, match=r"unknown kernel\(s\) \['gate_up'\] for block_sparse"):
        IMPL(x.requires_grad_(True), weights, config={"gate_up": {"BLOCK_M": 64}})
