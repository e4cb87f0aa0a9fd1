"""Test-wide settings."""

import pytest
import torch

# The suite's networks are tiny: one thread is faster than two on a 2-core machine, and tests run
# beside each other's processes (subprocess tests, accelerate launches) without oversubscribing.
torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The suite runs in random order (pytest-randomly), so no test may depend on what an
    earlier one left behind: commands set torch's thread count (`--threads`, the server's
    lifespan) and tests and fixtures draw from torch's global generator. Each test, and the
    fixtures set up for it (module-scoped ones included), starts with one thread and that
    generator seeded, as if it ran first (pytest-randomly does the same for `random` and numpy)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Name the random order's seed at the end, where `pytest -q` (make test) still shows it,
    so an order-dependent failure can be replayed exactly."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.hasplugin("randomly") and isinstance(seed, int):
        terminalreporter.write_line(f"random test order: replay it with --randomly-seed={seed}")
