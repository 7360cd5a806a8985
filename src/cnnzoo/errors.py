"""Errors that are the user's to fix. The CLI prints their message (no traceback) and exits with 2."""


class UserError(Exception):
    """Bad input: a wrong argument, a missing or unreadable file, an unusable dataset."""
