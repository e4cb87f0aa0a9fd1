"""Errors that cross the boundary to the user.

Every error a person can cause (a bad flag, a missing file, a corrupt checkpoint) is raised as a
subclass of `UserError` with a one-line message naming the file or field and what was expected;
the CLI prints that line and exits with code 2. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment; the message is one line."""


class ConfigError(UserError):
    """An unknown key, a wrong type or a bad value in a config, preset or override."""


class DataError(UserError):
    """A missing, empty or malformed dataset."""


class CheckpointError(UserError):
    """A missing, incomplete, corrupt or unwritable checkpoint."""


class TrainingDiverged(Exception):
    """Several non-finite losses in a row: the run stopped with its last good checkpoint."""
