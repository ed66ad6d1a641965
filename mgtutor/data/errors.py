"""The one error type for bad data files: its message names the file, the line and what was expected."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file mgtutor cannot use (malformed row, missing file, corrupt video).

    ``DataError(path, "expected 3 values, got 2", line=4)`` reads
    ``"Sample0001/Sample0001_finelabels.csv, line 4: expected 3 values, got 2"``.
    Several problems found in one pass can be raised together with :meth:`many`; each stays in
    ``problems`` so a checker can list them one by one.
    """

    def __init__(self, path: str | Path | None, message: str, line: int | None = None):
        where = str(path) if path is not None else ""
        if line is not None:
            where = f"{where}, line {line}"
        text = f"{where}: {message}" if where else message
        super().__init__(text)
        self.path = path
        self.line = line
        self.problems: list[str] = [text]

    @classmethod
    def many(cls, problems: list[str]) -> DataError:
        """One error carrying several already formatted problems (one a line in its message)."""
        if not problems:
            raise ValueError("DataError.many needs at least one problem")
        err = cls(None, "\n".join(problems) if len(problems) > 1 else problems[0])
        err.problems = list(problems)
        return err
