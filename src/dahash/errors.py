"""Errors that dahash reports to users as one line, naming the file or value at fault."""


class DahashError(Exception):
    """Base class of every error dahash raises on purpose; the CLI prints it as one line."""


class DataError(DahashError, ValueError):
    """A data file or array is missing, malformed or inconsistent."""


class ConfigError(DahashError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class DownloadError(DahashError):
    """A download, checksum or unpack step failed; the message names the URL or file at fault."""


def one_line(text: object) -> str:
    """``text`` with all whitespace runs collapsed, so that a message stays on one line."""
    return " ".join(str(text).split())
