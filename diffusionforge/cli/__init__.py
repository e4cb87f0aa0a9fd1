"""The command line (`diffusionforge`, `python -m diffusionforge`): cli/main.py builds the
parser; each command's module holds what it runs."""

from diffusionforge.cli.main import main

__all__ = ["main"]
