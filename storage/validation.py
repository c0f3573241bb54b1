"""Vectorised validation of imported columns that names the first bad row by file and line.

Every importer hands its raw columns (strings from a file, typed values from a database) to a
`Rows` checker, which converts them to the types the schema wants and raises
`ImportValidationError` at the first row that does not fit — before anything is stored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

MIN_YEAR, MAX_YEAR = 1970, 2100
_INT_RE = r"^\s*[+-]?\d+\s*$"


class ImportValidationError(ValueError):
    """A row of an import source is invalid; nothing was loaded."""

    def __init__(
        self, source: str, line: int | None, column: str | None, message: str, unit: str = "line"
    ) -> None:
        self.source, self.line, self.column, self.message, self.unit = (
            source,
            line,
            column,
            message,
            unit,
        )
        where = source if line is None else f"{source} {unit} {line}"
        what = message if column is None else f"column '{column}' {message}"
        super().__init__(f"{where}: {what}")


class Rows:
    """One batch of rows of one source; `lines[i]` is the line (or row) number of row i."""

    def __init__(self, source: str, frame: pd.DataFrame, lines: np.ndarray, unit: str = "line"):
        self.source, self.frame, self.lines, self.unit = (
            source,
            frame.reset_index(drop=True),
            lines,
            unit,
        )
        self.first_error: tuple[int, str | None, str] | None = None

    def fail(self, position: int, column: str | None, message: str) -> None:
        """Remember a bad row; only the earliest one is reported by `raise_first`."""
        if self.first_error is None or position < self.first_error[0]:
            self.first_error = (position, column, message)

    def raise_first(self) -> None:
        """Raise for the earliest bad row found by the checks run so far, if any."""
        if self.first_error is not None:
            position, column, message = self.first_error
            line = int(self.lines[position])
            raise ImportValidationError(self.source, line, column, message, self.unit)

    def require_columns(self, *names: str) -> None:
        missing = [n for n in names if n not in self.frame.columns]
        if missing:
            have = ", ".join(map(str, self.frame.columns)) or "none"
            raise ImportValidationError(
                self.source,
                None,
                None,
                f"missing required column(s) {', '.join(missing)} (columns found: {have})",
            )

    def _first(self, bad, column: str, message, values: pd.Series | None = None) -> None:
        """Record the first row where `bad` holds; `message(value)` describes it."""
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            pos = int(np.argmax(bad))
            value = (self.frame[column] if values is None else values).iloc[pos]
            value = value.item() if isinstance(value, np.generic) else value
            self.fail(pos, column, message(value) if callable(message) else message)

    def missing(self, column: str) -> pd.Series:
        """Empty cells: NULL/NaN, or the empty string."""
        values = self.frame[column]
        if _is_text(values):
            return values.isna() | values.eq("")
        return values.isna()

    def integers(
        self, column: str, *, required: bool = True, low: int | None = None, high: int | None = None
    ) -> pd.Series:
        """The column as nullable Int64; rejects text, fractions and values outside [low, high].

        Numeric dtypes (a clean CSV column parsed by pandas, a database column) take a fast
        vectorised path; text columns are checked against an integer pattern.
        """
        values, missing = self.frame[column], self.missing(column)
        if required:
            self._first(missing, column, "is required but empty")
        if pd.api.types.is_integer_dtype(values):
            out = values.astype("Int64")
        elif pd.api.types.is_float_dtype(values):
            fraction = values.notna() & (values % 1 != 0)
            self._first(fraction, column, lambda v: f"must be an integer, got {v!r}")
            out = values.where(~fraction).astype("Int64")
        else:
            text = values.astype("string")
            self._first(
                ~missing & ~text.str.match(_INT_RE).fillna(False),
                column,
                lambda v: f"must be an integer, got {v!r}",
            )
            out = pd.to_numeric(text.where(~missing), errors="coerce").astype("Int64")
        if low is not None:
            self._first(
                out.lt(low).fillna(False), column, lambda v: f"must be >= {low}, got {v!r}", out
            )
        if high is not None:
            self._first(
                out.gt(high).fillna(False), column, lambda v: f"must be <= {high}, got {v!r}", out
            )
        return out

    def strings(
        self,
        column: str,
        *,
        required: bool = False,
        choices: Iterable[str] | None = None,
        max_len: int | None = None,
        empty_is_null: bool = True,
    ) -> pd.Series:
        """The column as text (object dtype); empty cells are None, or "" if not `empty_is_null`.

        Values are stored as given; only `choices` forgive surrounding whitespace.
        """
        values, missing = self.frame[column], self.missing(column)
        if required:
            self._first(missing, column, "is required but empty")
        text = values if _is_text(values) else values.astype("string")
        text = text.astype(object).where(~missing, None)
        if choices is not None:
            allowed = list(choices)
            bad = ~missing & ~text.isin(allowed)
            if bad.any():
                text[bad] = text[bad].str.strip()
                bad = ~missing & ~text.isin(allowed)
            names = " or ".join(repr(c) for c in allowed)
            self._first(bad, column, lambda v: f"must be {names}, got {v!r}")
        if max_len is not None:
            self._first(
                text.str.len().gt(max_len).fillna(False),
                column,
                lambda v: f"must be at most {max_len} characters, got {len(str(v))}",
            )
        return text if empty_is_null else text.where(~missing, "")

    def timestamps(self, column: str, *, required: bool = True) -> pd.Series:
        """ISO 8601 text (any offset; naive means UTC) or unix seconds, as naive UTC datetimes."""
        values, missing = self.frame[column], self.missing(column)
        if required:
            self._first(missing, column, "is required but empty")
        if pd.api.types.is_datetime64_any_dtype(values):
            out = values.dt.tz_convert("UTC").dt.tz_localize(None) if values.dt.tz else values
        elif pd.api.types.is_numeric_dtype(values):
            out = _from_unix_seconds(values.where(~missing))
        else:
            out = _parse_time_text(values.where(~missing))
        self._first(
            ~missing & out.isna(),
            column,
            lambda v: f"must be an ISO 8601 datetime or unix seconds, got {v!r}",
        )
        out = out.astype("datetime64[us]")
        years = out.dt.year
        self._first(
            years.lt(MIN_YEAR).fillna(False) | years.gt(MAX_YEAR).fillna(False),
            column,
            lambda v: (
                f"must be between {MIN_YEAR} and {MAX_YEAR} (unix seconds expected), got {v!r}"
            ),
        )
        return out

    def unique(self, values: pd.Series, column: str) -> None:
        self._first(
            values.notna() & values.duplicated(keep="first"),
            column,
            lambda v: f"duplicate value {v!r}",
            values,
        )

    def known(self, values: pd.Series, known: np.ndarray, column: str, what: str) -> None:
        self._first(
            values.notna() & ~values.isin(known),
            column,
            lambda v: f"refers to unknown {what} {v!r}",
            values,
        )


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)


def _from_unix_seconds(seconds: pd.Series) -> pd.Series:
    """Unix seconds as datetimes; values far outside any plausible range become NaT."""
    seconds = pd.to_numeric(seconds, errors="coerce")
    plausible = seconds.between(-1e11, 1e11)
    out = pd.Series(pd.NaT, index=seconds.index, dtype="datetime64[us]")
    if plausible.any():
        out[plausible] = pd.to_datetime(seconds[plausible], unit="s").astype("datetime64[us]")
    return out


def _parse_time_text(values: pd.Series) -> pd.Series:
    """Text with a '-' is parsed as ISO 8601 (so 10-digit unix times are never read as
    compact ISO dates); the rest as unix seconds."""
    text = values.astype("string")
    iso = text.str.contains("-", regex=False).fillna(False)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if iso.any():
        parsed = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
        out[iso] = parsed.dt.tz_localize(None).astype("datetime64[us]")
    rest = ~iso & text.notna()
    if rest.any():
        out[rest] = _from_unix_seconds(text[rest])
    return out
