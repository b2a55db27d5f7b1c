"""Fixtures of the triton_grouped tests."""

import pytest

from moebench.tuning import cache, files


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A fresh config folder as the only one tuned configs are read from and written to."""
    monkeypatch.setenv(cache.CONFIG_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(files, "shipped_config_dir", lambda: None)
    monkeypatch.delenv("MOEBENCH_PIN_CONFIG", raising=False)
    cache.clear_memo()
    yield tmp_path
    cache.clear_memo()
