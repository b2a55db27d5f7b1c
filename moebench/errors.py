"""Errors moebench raises for bad input: one class, one message naming the argument."""


class MoEInputError(ValueError):
    """An argument has the wrong shape, dtype, device or value. The message names it."""


class UnknownImplementationError(KeyError):
    """A name that no registered implementation (or preset) carries."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
