"""Exceptions the CLI turns into one line and an exit status, never a traceback."""


class UserError(Exception):
    """A problem with the user's input. The CLI prints its message on one line and exits 2.

    The message names the file, row or key at fault and says what to do about it.
    """


class NonFiniteError(Exception):
    """Training produced a NaN or inf (loss, reward or gradient norm) with run.on_nonfinite=stop.

    The CLI prints the message (step, quantity, last good checkpoint) and exits 3; nothing is
    written after the last good checkpoint.
    """


class StoppedBySignal(Exception):
    """SIGINT or SIGTERM asked the run to stop; a checkpoint was written first.

    The CLI prints how to resume and exits 0: stopping on request is not a failure.
    """


def first_line(error: Exception, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when the message is empty),
    for one-line errors that quote a library's complaint; cut to `limit` characters if given."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:limit]
