"""The exceptions that mean "the user asked for something we cannot do".

The CLI turns every `MnistresError` into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MnistresError(Exception):
    """A user mistake or an unmet precondition, explained in one line."""


class ConfigError(MnistresError):
    """A RunConfig key, value or file that cannot be used; `key` names the setting at fault, where one is."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class UnknownNameError(MnistresError):
    """A registry name that nothing registered."""


class DataError(MnistresError):
    """Dataset files that are missing, unreadable or malformed."""


class DeviceError(MnistresError):
    """A --device that this machine does not have."""


class CheckpointError(MnistresError):
    """A checkpoint that is missing, damaged or not ours."""


class PluginError(MnistresError):
    """A plugin that the user named and that does not load, or an entry that fails to build or run."""


class WriteError(MnistresError):
    """A file or folder that cannot be written: no space, no permission, a read-only filesystem, a name too long."""


def reason(error: BaseException) -> str:
    """An OSError's reason in words ("No space left on device"), without its errno number; for
    other errors their message, or their type when they have none."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
