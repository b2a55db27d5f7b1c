"""pytest plugin for the gate's tests, loaded on the current side only: an implementation the
baseline does not have (padded_batch under a new name), so its benchmark is new in the current tree."""

NEW = "padded_batch_again"


def pytest_sessionstart(session):
    import moebench  # here, not at import: tests/conftest.py sets TRITON_INTERPRET first

    padded_batch = moebench.get("padded_batch")

    @moebench.register(NEW, kind="padded", description="padded_batch under another name (gate tests)")
    def _again(x, weights, *, out=None, config=None):
        return padded_batch(x, weights, out=out, config=config, check=False)
