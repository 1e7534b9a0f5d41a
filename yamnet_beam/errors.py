"""The one base of every error a user can mend: the command line prints its message and exits 2.

Each stage raises its own subclass (a bad option, input, model, head, output ...), whose message says
what to do; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, options or environment found before (or instead of) work; the message says what to do."""
