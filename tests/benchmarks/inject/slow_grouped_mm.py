"""pytest plugin for the gate's tests, loaded on the current side only: a real 2x slowdown.

Every call of `grouped_mm` through moebench.get runs the implementation twice (the same work
again, timed like any other), as a code change that doubled its cost would.
"""

SLOWED = "grouped_mm"


class _Twice:
    """Stands in for the ImplInfo of SLOWED: same attributes, every call runs it twice."""

    def __init__(self, info):
        self._info = info

    def __getattr__(self, name):
        return getattr(self._info, name)

    def __call__(self, *args, **kwargs):
        self._info(*args, **kwargs)
        return self._info(*args, **kwargs)


def pytest_sessionstart(session):
    import moebench  # here, not at import: tests/conftest.py sets TRITON_INTERPRET first

    get = moebench.get
    moebench.get = lambda name: _Twice(get(name)) if name == SLOWED else get(name)
