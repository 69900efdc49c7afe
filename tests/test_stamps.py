"""Stamped rows: the stamp of a state, and how a torn state is told from a whole one."""

from __future__ import annotations

from stream import stamps


def test_stamp_round_trip_and_whole():
    value = stamps.stamp(3, 41, b"payload")
    assert stamps.split(value) == ((3, 41), b"payload")
    assert stamps.whole((3, 41), (3, 41), (3, 41)) and not stamps.whole((3, 41), (3, 40))
