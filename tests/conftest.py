"""Test setup: Triton kernels run where they can, and every test that launches one says so.

Without a GPU, Triton kernels run in the interpreter on CPU tensors (TRITON_INTERPRET must be set
before any @triton.jit function is created, i.e. before moebench.kernels is imported; conftest runs
first). With a GPU they run compiled, on CUDA tensors. A test that launches Triton kernels takes
the `triton_device` fixture and puts its tensors there, so it means the same on both machines:
its id shows which (`[interpreter-cpu]` or `[compiled-cuda]`). Under the interpreter, a test that
launches a kernel without that fixture fails (`_kernels_run_on_the_triton_device`), so a new test
cannot quietly hard-code "cpu" and then fail on a GPU machine, where compiled kernels refuse CPU
tensors.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from moebench.kernels.common.interpreter import interpreting, kernel_device  # noqa: E402  (no triton)

# pytester: tests/test_kernel_device.py runs the guard below in a nested session; alone: timing tests
# run alone under pytest-xdist (tests/alone.py)
pytest_plugins = ["pytester", "alone"]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TRITON_DEVICE = kernel_device()
INTERPRETING = interpreting()
PROBES_MODULE = "moebench.kernels.common.probes"  # the interpreter's own bug probes: not a test's launch


@pytest.fixture
def device() -> str:
    """Where torch-only code runs: CUDA when present, else the CPU."""
    return DEVICE


@pytest.fixture(params=[TRITON_DEVICE], ids=["interpreter-cpu" if TRITON_DEVICE == "cpu" else "compiled-cuda"])
def triton_device(request) -> str:
    """Where Triton kernels run here (moebench.kernels.common.interpreter.kernel_device): "cpu" under
    the interpreter, "cuda" with compiled kernels on a GPU machine."""
    return request.param


def _count_interpreter_launches() -> list[str]:
    """Names of the kernels the interpreter launches (probes excluded), appended as they launch."""
    launches: list[str] = []
    if not INTERPRETING:
        return launches
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # no triton: nothing launches
        return launches
    real_run = InterpretedFunction.run

    def run(self, *args, **kwargs):
        if not kwargs.get("warmup") and getattr(self.fn, "__module__", "") != PROBES_MODULE:
            launches.append(self.fn.__name__)
        return real_run(self, *args, **kwargs)

    InterpretedFunction.run = run
    return launches


LAUNCHES = _count_interpreter_launches()


@pytest.fixture(autouse=True)
def _kernels_run_on_the_triton_device(request):
    start = len(LAUNCHES)
    yield
    launched = sorted(set(LAUNCHES[start:]))
    exempt = "triton_device" in request.fixturenames or request.node.get_closest_marker("interpreter")
    if launched and not exempt:
        pytest.fail(
            f"launched Triton kernels {launched} without the `triton_device` fixture: take it and put the "
            "tensors there (compiled kernels refuse CPU tensors on a GPU machine)",
            pytrace=False,
        )


def pytest_configure(config):
    config.addinivalue_line("markers", "kernels: launches Triton kernels on the triton_device fixture (added here)")


def pytest_addoption(parser):
    parser.addoption(
        "--shard",
        default=None,
        metavar="I/N",
        help="run every N-th selected test starting with the I-th (moebench session runs N shards at once)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Before -m/-k select (so `-m kernels` sees the marker): mark kernel tests, skip what cannot run
    here. After them: keep this process's shard of what is selected."""
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_compiled = pytest.mark.skip(reason="checks the Triton interpreter itself (set TRITON_INTERPRET=1 to run it)")
    for item in items:
        if "triton_device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernels)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "interpreter" in item.keywords and not INTERPRETING:
            item.add_marker(skip_compiled)
    yield
    shard = config.getoption("--shard")
    if shard:
        index, _, count = shard.partition("/")
        if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
            raise pytest.UsageError(f"--shard: expected I/N with 1 <= I <= N, got {shard!r}")
        kept = items[int(index) - 1 :: int(count)]
        chosen = set(kept)
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = kept
