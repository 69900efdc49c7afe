"""Read public interaction logs into one frame: user (str), item (str), ts (int64, Unix s).

Rows come back in file order, unsorted: `sessionize` does a stable sort by (user, ts),
so events logged in the same second keep the order the site wrote them in.

Every problem a user can fix (missing file, not gzip, not CSV, a missing column, a bad
timestamp, an empty file) is raised as one-line `DataError` naming the file; no pandas
traceback escapes. Files are read in chunks, only the needed columns, ids as strings
(the C parser shares one str object per repeated id in a chunk), so the 33M-row
YOOCHOOSE click log stays within a few GB.

Formats (`FORMATS`; `fmt=None` detects them from the first line, then the file name):

- movielens-dslabs       data/movielens.csv.gz: movieId,title,year,genres,userId,rating,timestamp
- movielens-ratings-csv  ratings.csv (ml-latest, ml-20m, ml-25m): userId,movieId,rating,timestamp
- movielens-udata        ml-100k u.data: user<TAB>item<TAB>rating<TAB>timestamp, no header
- movielens-dat          ml-1m/ml-10m ratings.dat: UserID::MovieID::Rating::Timestamp
- yoochoose-clicks       yoochoose-clicks.dat: session,ISO-8601 time,item,category, no header;
                         user = session id (the log has no user ids)
- yoochoose-sample       data/yoochoose-sample.csv: session_id,timestamp,item_id,category
- retailrocket           events.csv: timestamp(ms),visitorid,event,itemid,transactionid;
                         all event types unless `events=("view", ...)`
- diginetica             train-item-views.csv: sessionId;userId;itemId;timeframe;eventdate;
                         user = userId, or "s"+sessionId where userId is empty/NA;
                         ts = eventdate midnight UTC + timeframe(ms) // 1000
- xing                   RecSys 2016/2017 interactions.csv, tab-separated with header
                         user_id,item_id,interaction_type,created_at; type 4 (delete) is
                         dropped unless `events=(...)` names the types to keep
- generic                any CSV with header user,item,ts (Unix seconds)
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from hiertcn.errors import ConfigError, DataError

CHUNK_ROWS = 1_000_000  # bounds the peak of per-chunk temporaries (ISO strings, NaN masks)
_EPOCH = pd.Timestamp(0, tz="UTC")
_SECOND = pd.Timedelta(seconds=1)
XING_NEGATIVE_TYPES = (4,)  # "delete": the user removed the job from their list
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
_SUFFIX = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
_OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}


class _BadValue(Exception):
    """A converter found a bad cell; the reader adds the file, the row and the source
    column name (converters only know their internal column names)."""

    def __init__(self, problem: str, column: str, row: int, value=None):
        super().__init__(problem)
        self.problem, self.column, self.row, self.value = problem, column, row, value


@dataclass(frozen=True)
class _Spec:
    name: str
    layout: str  # shown in messages so the user sees what was expected
    sep: str
    header: bool
    columns: dict  # source column (header name, or position when headerless) -> internal name
    ids: tuple  # internal names read as strings: ids like "007" stay intact
    convert: Callable  # (chunk with internal names, events) -> frame user, item, ts
    filename: str  # regex on the file name, the fallback when the first line is ambiguous
    first_line: str = ""  # regex on the first line of a headerless format
    also_in_header: tuple = ()  # further header columns that tell this format apart

    def source_name(self, internal: str) -> str:
        for source, name in self.columns.items():
            if name == internal:
                return str(source) if self.header else f"field {source + 1}"
        return internal


# ---------------------------------------------------------------- cell converters


def _ids(chunk: pd.DataFrame, column: str) -> pd.Series:
    values = chunk[column]
    missing = values.isna().to_numpy()
    if missing.any():
        raise _BadValue("empty id", column, int(np.argmax(missing)))
    return values.astype(str)


def _int_column(chunk: pd.DataFrame, column: str) -> np.ndarray:
    """Integers; the parser infers int64 for a clean column, so only a dirty one
    pays for the coercion that finds the first bad value."""
    values = chunk[column]
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(np.int64)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() | (numbers % 1 != 0)).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise _BadValue("unparsable timestamp", column, row, values.iloc[row])
    return numbers.to_numpy(np.int64)


def _datetime_seconds(chunk: pd.DataFrame, column: str, fmt: str) -> np.ndarray:
    """Date strings -> Unix seconds, UTC (a trailing Z or no zone both mean UTC)."""
    values = chunk[column]
    parsed = pd.to_datetime(values, format=fmt, utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise _BadValue("unparsable timestamp", column, row, values.iloc[row])
    # floor division: sub-second parts are cut, never rounded into the next second
    return ((parsed - _EPOCH) // _SECOND).to_numpy(np.int64)


def _frame(user, item, ts) -> pd.DataFrame:
    return pd.DataFrame({"user": user, "item": item, "ts": np.asarray(ts, np.int64)})


# ------------------------------------------------------------- format converters


def _no_events(events, name: str):
    if events is not None:
        raise ConfigError(f"events= applies to retailrocket and xing only, not {name}")


def _plain_seconds(name: str) -> Callable:
    def convert(chunk, events):
        _no_events(events, name)
        return _frame(_ids(chunk, "user"), _ids(chunk, "item"), _int_column(chunk, "ts"))
    return convert


def _yoochoose_clicks(chunk, events):
    _no_events(events, "yoochoose-clicks")
    ts = _datetime_seconds(chunk, "ts", "ISO8601")
    return _frame(_ids(chunk, "user"), _ids(chunk, "item"), ts)


def _retailrocket(chunk, events):
    ts = _int_column(chunk, "ts") // 1000  # the log is in milliseconds
    frame = _frame(_ids(chunk, "user"), _ids(chunk, "item"), ts)
    if events is None:
        return frame
    return frame[chunk["event"].isin(list(events)).to_numpy()]


def _diginetica(chunk, events):
    _no_events(events, "diginetica")
    # anonymous sessions have no userId; "s" keeps their ids apart from real user ids
    session = "s" + _ids(chunk, "session")
    user = chunk["user"].astype(str).where(chunk["user"].notna(), session)
    day = _datetime_seconds(chunk, "eventdate", "%Y-%m-%d")
    ts = day + _int_column(chunk, "timeframe") // 1000
    return _frame(user, _ids(chunk, "item"), ts)


def _xing(chunk, events):
    frame = _frame(_ids(chunk, "user"), _ids(chunk, "item"), _int_column(chunk, "ts"))
    kind = chunk["event"]
    if events is None:
        return frame[~kind.isin(XING_NEGATIVE_TYPES).to_numpy()]
    try:
        wanted = [int(e) for e in events]
    except (TypeError, ValueError):
        raise ConfigError(f"xing events= must be interaction types (ints), got {events!r}") from None
    return frame[kind.isin(wanted).to_numpy()]


# ------------------------------------------------------------------------ formats

_SPECS = (
    # dslabs first: its header is a superset of ratings.csv's (same columns read)
    _Spec("movielens-dslabs", "movieId,title,year,genres,userId,rating,timestamp", ",", True,
          {"userId": "user", "movieId": "item", "timestamp": "ts"}, ("user", "item"),
          _plain_seconds("movielens-dslabs"), r"^movielens\.csv",
          also_in_header=("title", "genres")),
    _Spec("movielens-ratings-csv", "userId,movieId,rating,timestamp", ",", True,
          {"userId": "user", "movieId": "item", "timestamp": "ts"}, ("user", "item"),
          _plain_seconds("movielens-ratings-csv"), r"^ratings\.csv"),
    _Spec("movielens-udata", "user<TAB>item<TAB>rating<TAB>timestamp (no header)", "\t", False,
          {0: "user", 1: "item", 3: "ts"}, ("user", "item"),
          _plain_seconds("movielens-udata"), r"^u\d?\.(data|base|test)",
          r"^\d+\t\d+\t[\d.]+\t\d+\s*$"),
    # ":" not "::": a one-char separator keeps the fast C parser; the empty fields
    # between the colons sit at odd positions and are skipped
    _Spec("movielens-dat", "UserID::MovieID::Rating::Timestamp", ":", False,
          {0: "user", 2: "item", 6: "ts"}, ("user", "item"),
          _plain_seconds("movielens-dat"), r"^ratings\.dat",
          r"^\d+::\d+::[\d.]+::\d+\s*$"),
    _Spec("yoochoose-clicks", "session_id,ISO-8601 timestamp,item_id,category (no header)", ",",
          False, {0: "user", 1: "ts", 2: "item"}, ("user", "item", "ts"),
          _yoochoose_clicks, r"^yoochoose-(clicks|test)",
          r"^\d+,\d{4}-\d\d-\d\dT[\d:.]+Z?,\d+,"),
    _Spec("yoochoose-sample", "session_id,timestamp,item_id,category", ",", True,
          {"session_id": "user", "item_id": "item", "timestamp": "ts"}, ("user", "item"),
          _plain_seconds("yoochoose-sample"), r"^yoochoose-sample"),
    _Spec("retailrocket", "timestamp,visitorid,event,itemid,transactionid", ",", True,
          {"visitorid": "user", "itemid": "item", "timestamp": "ts", "event": "event"},
          ("user", "item", "event"), _retailrocket, r"^events\.csv"),
    _Spec("diginetica", "sessionId;userId;itemId;timeframe;eventdate", ";", True,
          {"sessionId": "session", "userId": "user", "itemId": "item",
           "timeframe": "timeframe", "eventdate": "eventdate"},
          ("session", "user", "item", "eventdate"), _diginetica, r"^train-item-views"),
    _Spec("xing", "user_id<TAB>item_id<TAB>interaction_type<TAB>created_at", "\t", True,
          {"user_id": "user", "item_id": "item", "interaction_type": "event",
           "created_at": "ts"}, ("user", "item"), _xing, r"^interactions\.csv"),
    _Spec("generic", "user,item,ts", ",", True,
          {"user": "user", "item": "item", "ts": "ts"}, ("user", "item"),
          _plain_seconds("generic"), r"^$"),
)
_BY_NAME = {spec.name: spec for spec in _SPECS}
FORMATS = tuple(_BY_NAME)


# ---------------------------------------------------------------------- file level


def _compression(path: Path) -> str | None:
    """From the magic bytes, not the name, so a mislabelled file gets a clear message."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(6)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror or exc}") from None
    found = next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)
    named = _SUFFIX.get(path.suffix.lower())
    if named and found != named:
        raise DataError(f"{path}: named {path.suffix} but is not {named}-compressed")
    return found


def _first_line(path: Path, compression: str | None) -> str:
    opener = _OPENERS.get(compression, open)
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as text:
            line = text.readline(1 << 20)  # bounded: a binary file may have no newline
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text/CSV file (not UTF-8)") from None
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read ({compression or 'plain'}): {_one_line(exc)}") from None
    if not line.strip():
        raise DataError(f"{path}: file is empty")
    if "\x00" in line:
        raise DataError(f"{path}: binary data, not a text/CSV file")
    return line.rstrip("\r\n")


def _header_fields(line: str, sep: str) -> list[str]:
    return [field.strip().strip('"').strip() for field in line.split(sep)]


def _matches(spec: _Spec, line: str) -> bool:
    if spec.header:
        wanted = set(spec.columns) | set(spec.also_in_header)
        return wanted <= set(_header_fields(line, spec.sep))
    return re.match(spec.first_line, line) is not None


def _detect(path: Path, line: str) -> _Spec:
    for spec in _SPECS:
        if _matches(spec, line):
            return spec
    for spec in _SPECS:  # the content was ambiguous: the usual file names decide
        if re.match(spec.filename, path.name, re.IGNORECASE):
            return spec
    raise DataError(f"{path}: cannot detect the format from the first line {line[:80]!r}; "
                    f"pass fmt= one of {', '.join(FORMATS)}")


def _check_layout(path: Path, spec: _Spec, line: str) -> None:
    """Fail before parsing, naming the missing column and what the file has."""
    if spec.header:
        found = _header_fields(line, spec.sep)
        missing = [c for c in spec.columns if c not in found]
        if missing:
            sep = "TAB" if spec.sep == "\t" else repr(spec.sep)
            raise DataError(f"{path}: missing column {missing[0]!r} for {spec.name} "
                            f"(found: {', '.join(found)}; expected {sep}-separated {spec.layout})")
        return
    n_fields = len(line.split(spec.sep))
    if n_fields <= max(spec.columns):
        raise DataError(f"{path}: first line {line[:80]!r} does not look like {spec.layout} "
                        f"({spec.name})")


def _csv_options(spec: _Spec, compression: str | None) -> dict:
    return dict(
        sep=spec.sep,
        header=0 if spec.header else None,
        usecols=list(spec.columns),
        dtype={source: str for source, name in spec.columns.items() if name in spec.ids},
        compression=compression,
        encoding="utf-8-sig",
        chunksize=CHUNK_ROWS,
        engine="c",
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _read(path: Path, spec: _Spec, compression: str | None, events) -> pd.DataFrame:
    frames, first_row = [], 0
    try:
        with pd.read_csv(path, **_csv_options(spec, compression)) as chunks:
            for chunk in chunks:
                chunk = chunk.rename(columns=spec.columns)
                try:
                    frames.append(spec.convert(chunk, events))
                except _BadValue as bad:
                    raise _located(path, spec, bad, first_row) from None
                first_row += len(chunk)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read as {spec.name} ({spec.layout}): "
                        f"{_one_line(exc)}") from None
    if first_row == 0:
        raise DataError(f"{path}: no data rows (only a header)")
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DataError(f"{path}: no interactions left after the event filter "
                        f"(events={events!r})")
    return frame


def _located(path: Path, spec: _Spec, bad: _BadValue, first_row: int) -> DataError:
    where = f"column {spec.source_name(bad.column)!r}, data row {first_row + bad.row + 1}"
    if bad.value is None:
        value = ""
    elif pd.isna(bad.value):
        value = ": (empty)"
    else:
        value = f": {str(bad.value)[:80]!r}"
    return DataError(f"{path}: {bad.problem} in {where}{value}")


# ------------------------------------------------------------------------- public


def detect_format(path) -> str:
    """The name (one of FORMATS) of the format of the file at `path`."""
    path = _existing(path)
    return _detect(path, _first_line(path, _compression(path))).name


def load_interactions(path, fmt: str | None = None, *,
                      events: Iterable | None = None) -> pd.DataFrame:
    """Columns user (str), item (str), ts (int64 Unix seconds), in file order.

    `events` filters by event type where the log has one: retailrocket event names
    (default: all), xing interaction types (default: all but 4, delete)."""
    if fmt is not None and fmt not in _BY_NAME:
        raise ConfigError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if events is not None and isinstance(events, (str, int)):
        events = (events,)  # events="view" means ("view",), not ("v", "i", "e", "w")
    path = _existing(path)
    compression = _compression(path)
    line = _first_line(path, compression)
    spec = _BY_NAME[fmt] if fmt else _detect(path, line)
    _check_layout(path, spec, line)
    return _read(path, spec, compression, events)


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    return path
