"""How the worker logs an unexpected exception without user data.

An exception's message can quote what it failed on (`KeyError('alice')`, a row's bytes,
an event's JSON), so by default a failure is logged as its type and the frames it came
through, file:line and function, never its message or its chained causes' messages.
An operator who debugs on a private machine sets `log_user_data` (HIERTCN_LOG_USER_DATA)
to log the full traceback instead.
"""

from __future__ import annotations

import traceback

_reveal = False


def reveal_user_data(on: bool) -> None:
    """Set once at start from the config: full tracebacks (with messages) or not."""
    global _reveal
    _reveal = bool(on)


def describe(exc: BaseException) -> str:
    """One log-ready text of `exc`: type and frames (innermost last), no message unless
    user data may be logged."""
    if _reveal:
        return "".join(traceback.format_exception(exc)).rstrip()
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{_short(f.filename)}:{f.lineno} in {f.name}"
                        for f in reversed(frames[-6:]))
    return f"{type(exc).__name__} (message withheld; HIERTCN_LOG_USER_DATA=true shows it) " \
           f"at {where or 'unknown location'}"


def _short(path: str) -> str:
    for root in ("/stream/", "/hiertcn/", "/site-packages/"):
        if root in path:
            return path[path.rindex(root) + 1:]
    return path
