"""The one exception type for mistakes a user can fix (bad file, bad key, bad value)."""


class UserError(Exception):
    """A problem with the user's input. The CLI prints its message on one line and exits 2.

    The message names the file, row or key at fault and says what to do about it.
    """
