"""Test-wide settings."""

import torch

# The suite's networks are tiny: one thread is faster than two on a 2-core machine, and tests run
# beside each other's processes (subprocess tests, accelerate launches) without oversubscribing.
torch.set_num_threads(1)
