"""Errors that dahash reports to users as one line, naming the file or value at fault."""


class DahashError(Exception):
    """Base class of every error dahash raises on purpose; the CLI prints it as one line."""


class DataError(DahashError, ValueError):
    """A data file or array is missing, malformed or inconsistent."""


class ConfigError(DahashError, ValueError):
    """A configuration value is out of range or of the wrong type."""
