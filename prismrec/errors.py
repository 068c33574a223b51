"""User-facing errors.

Anything the user can fix (a bad file, a bad option, a missing stage) raises
`PrismrecError` with one line naming the file/line/field and what was expected.
The CLI prints it and exits with status 2; it never shows a traceback.
"""


class PrismrecError(Exception):
    """An error caused by the user's input or configuration (CLI exit code 2)."""


class MissingStageError(PrismrecError):
    """A stage needs the artefact of an earlier stage that is not in the run directory."""
