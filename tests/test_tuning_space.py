"""Token buckets, device keys and the shared space helpers (smem estimate, pruning, signature)."""

import pytest
import torch

from moebench.errors import MoEInputError
from moebench.spec import MoESpec
from moebench.tuning.buckets import TOKEN_BUCKETS, BucketIndex, buckets_for, check_tokens, nearest_bucket
from moebench.tuning.device import device_info, normalise_name
from moebench.tuning.space import (
    SMEM_LIMIT_H100,
    TunableKernel,
    configs,
    prune,
    smem_bytes,
    space_signature,
)

SPEC = MoESpec(4, 2, 32, 48, dtype=torch.float32)


@pytest.mark.parametrize(
    ("tokens", "bucket"),
    [(0, 1), (1, 1), (2, 2), (3, 4), (5, 4), (6, 8), (45, 32), (46, 64), (1000, 1024), (10**6, 65536)],
)
def test_nearest_bucket_is_nearest_on_a_log_scale(tokens, bucket):
    assert nearest_bucket(tokens) == bucket


def test_nearest_bucket_among_a_sparse_set_of_recorded_buckets():
    index = BucketIndex([64, 1, 4096])
    assert index.buckets == (1, 64, 4096)
    assert [index.nearest(t) for t in (1, 7, 8, 64, 511, 512, 10**5)] == [1, 1, 64, 64, 64, 4096, 4096]


def test_buckets_to_tune():
    assert buckets_for(None, "cuda") == list(TOKEN_BUCKETS)
    assert len(buckets_for(None, "cpu")) < len(TOKEN_BUCKETS)
    assert buckets_for([100, 128, 3], "cuda") == [4, 128]
    with pytest.raises(MoEInputError, match="--tokens"):
        buckets_for([0], "cuda")


def test_check_tokens_add_an_odd_count_served_by_the_same_bucket():
    for bucket in TOKEN_BUCKETS[3:]:
        exact, odd = check_tokens(bucket)
        assert exact == bucket and odd % 2 == 1 and nearest_bucket(odd) == bucket


def test_device_key_on_the_cpu_and_name_normalisation(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert device_info("cpu").key == "cpu-interpreter"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert device_info("cpu").key.startswith("cpu-") and device_info("cpu").key != "cpu-interpreter"
    assert normalise_name("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"


def test_smem_bytes_and_prune():
    assert smem_bytes(64, 128, 64, 3, torch.bfloat16) == 3 * (64 * 64 + 64 * 128) * 2
    assert smem_bytes(64, 128, 64, 3, torch.float32) == 2 * smem_bytes(64, 128, 64, 3, torch.bfloat16)
    space = configs(BLOCK_M=[64, 256], BLOCK_N=[256], BLOCK_K=[128], num_stages=[2, 5])
    kept = prune(space + [{"path": "decode"}], SMEM_LIMIT_H100, torch.bfloat16)
    assert {"path": "decode"} in kept, "configs without tile sizes are kept"
    assert {"BLOCK_M": 64, "BLOCK_N": 256, "BLOCK_K": 128, "num_stages": 2} in kept
    assert all(
        smem_bytes(c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"], c["num_stages"], torch.bfloat16) <= SMEM_LIMIT_H100
        for c in kept
        if "BLOCK_M" in c
    )
    assert len(kept) < len(space) + 1


def test_configs_is_the_ordered_product():
    assert configs(A=[1, 2], B=["x"]) == [{"A": 1, "B": "x"}, {"A": 2, "B": "x"}]


def test_space_signature_changes_with_the_space_not_the_default():
    def space(spec, t):
        return configs(BLOCK=[16, 32])

    base = TunableKernel("i", "k", space, lambda spec, t: {"BLOCK": 16})
    other_default = TunableKernel("i", "k", space, lambda spec, t: {"BLOCK": 32})
    grown = TunableKernel("i", "k", lambda spec, t: configs(BLOCK=[16, 32, 64]), base.default)
    renamed = TunableKernel("i", "k", lambda spec, t: configs(BLOCK_M=[16, 32]), lambda spec, t: {"BLOCK_M": 16})
    hash_of = lambda kernel: space_signature(kernel, SPEC, TOKEN_BUCKETS)[0]
    assert hash_of(base) == hash_of(other_default)
    assert hash_of(base) != hash_of(grown)
    assert hash_of(base) != hash_of(renamed)
    assert space_signature(renamed, SPEC, TOKEN_BUCKETS)[1] == {"BLOCK_M"}
