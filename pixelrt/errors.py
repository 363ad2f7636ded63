"""User-facing errors.

Every problem a user can fix (a missing file, a wrong shape, a corrupt bundle)
raises a subclass of :class:`PixelrtError` whose message names the thing that
is wrong and the fix. The CLI prints that one message and exits with status 2;
it never prints a traceback for these.
"""


class PixelrtError(Exception):
    """A problem the user can fix; the message says what and how."""


class DataError(PixelrtError):
    """A data set could not be read or does not fit (shape, range, emptiness)."""


class BundleError(PixelrtError):
    """A bundle is missing, corrupt, or does not match what its manifest says."""


class CheckpointError(PixelrtError):
    """A checkpoint is missing, corrupt, or does not match its config."""


class ParityError(PixelrtError):
    """A parity or validation measurement missed its budget."""
