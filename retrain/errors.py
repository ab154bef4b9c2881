"""The base of errors caused by input the user must fix; the CLI prints them as one line."""


class InputError(ValueError):
    """Bad input: an invalid name, an unusable suite file, nothing to validate."""
