"""User-facing errors.

Anything the user can fix (a bad path, an unknown layer, a nonsense number) raises
:class:`NStyleError` with a message that fits on one line. The CLI prints that line and
exits non-zero; anything else escaping is a bug and keeps its traceback.
"""


class NStyleError(Exception):
    """A problem with the user's input, described in one line."""


class ConfigError(NStyleError):
    """An invalid configuration value; the message names the key."""


class ImageError(NStyleError):
    """An image that cannot be read, or cannot be written where asked."""


class WeightsError(NStyleError):
    """Backbone weights that cannot be had (offline, missing or mismatched file)."""


class VideoError(NStyleError):
    """A clip that cannot be read or written, or a video run that cannot go on."""


class RunError(NStyleError):
    """A run that ended without a result to keep (stopped before its first iteration finished)."""
