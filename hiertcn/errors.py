"""Errors a user can act on. The CLI prints `str(err)` as one line and exits 2."""


class HierTCNError(Exception):
    """Base class: the message names the problem and what to fix."""


class DataError(HierTCNError):
    """A data file is missing, unreadable, or lacks a column."""


class ConfigError(HierTCNError):
    """An option has a bad value; the message names the option (and its env variable)."""


class CheckpointError(HierTCNError):
    """A checkpoint or export is missing, corrupt, or from an incompatible version."""
