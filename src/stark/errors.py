"""The one exception type that means "the user gave us something we cannot use".

Keeping it separate from programming errors lets the CLI turn it into a single clean line
instead of a traceback, while genuine bugs still surface with their full stack.
"""

from __future__ import annotations


class StarkInputError(ValueError):
    """Bad user input (file, column, label, option value).

    The CLI prints ``stark: error: <message>`` (one line) and exits 2, so messages must be a
    single line that names both the problem and the file, column or value concerned.
    """

    def __init__(self, message: str) -> None:
        # A multi-line message would break the one-line CLI contract; flatten defensively so a
        # stray newline in user data quoted into a message cannot split the output.
        super().__init__(" ".join(str(message).splitlines()))
