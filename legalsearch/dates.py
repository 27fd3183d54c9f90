"""Dates as users give them: ISO days (YYYY-MM-DD), checked to be real calendar days."""

from __future__ import annotations

import datetime
import re

from .errors import UsageError

ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_day(value: str, name: str = "as_of") -> str:
    """`value` if it is a real day written YYYY-MM-DD; else `UsageError` naming `name` and the format."""
    if not isinstance(value, str) or not ISO_DAY.fullmatch(value):
        raise UsageError(f"{name} {value!r}: give a date as YYYY-MM-DD, e.g. 2011-09-27")
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{name} {value!r} is not a calendar day; give a date as YYYY-MM-DD, e.g. 2011-09-27"
        ) from None
    return value
