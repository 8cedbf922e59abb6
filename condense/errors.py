"""The one exception type for bad input: its message says what is wrong and what to do."""


class UserError(ValueError):
    """Bad input from the user (a path, a column, a file, a setting); the CLI prints it and exits 2."""
