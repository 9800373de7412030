"""The one error a user can fix: commands print its message on one line and exit with code 2."""


class InputError(ValueError):
    """Bad input: paths, flags, data and model that do not fit together. The message says how to fix it.

    ``prefix`` is what a command prints before the message (a subclass says what kind of input failed).
    """

    prefix = ""
