"""Turn the files unpacked from a fetched package into one events file a loader reads.

Each builder takes the unpacked files (in the order the data set's spec names them)
and writes `target` atomically: a half-written file never looks finished, and the
caller checks the result's sha256, so a builder must write the same bytes on every
machine (plain integer formatting, no floats, no library-dependent CSV dialect).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hiertcn.errors import DataError

# Instacart publishes no dates, only each order's gap to the user's previous order in
# days (capped at 30) and its hour of day; every user's timeline starts here.
INSTACART_ANCHOR = 1_483_228_800  # 2017-01-01 00:00 UTC, the data set's release year
INSTACART_COLUMNS = ("order_id", "user_id", "order_number", "order_hour_of_day",
                     "days_since_prior_order", "product_id", "add_to_cart_order")


def concatenate(parts: list[Path], target: Path) -> None:
    """The parts one after another, each ending in a newline."""
    with _atomic(target) as dst:
        for part in parts:
            data = part.read_bytes()
            dst.write(data if data.endswith(b"\n") or not data else data + b"\n")


def instacart(parts: list[Path], target: Path) -> None:
    """Instacart order lines (orders.csv joined with order_products, one row per
    product in an order) -> `user,item,ts`: every product of an order at the order's
    time, in add-to-cart order (a stable sort by ts keeps it)."""
    (path,) = parts
    try:
        rows = pd.read_csv(path, usecols=list(INSTACART_COLUMNS))
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not Instacart order lines ({exc})") from None
    rows = rows.sort_values(["user_id", "order_number", "add_to_cart_order"], kind="stable")
    orders = rows.drop_duplicates("order_id")
    gap = orders["days_since_prior_order"].fillna(0).to_numpy(np.int64)  # NaN: first order
    day = pd.Series(gap).groupby(orders["user_id"].to_numpy()).cumsum().to_numpy()
    order_ts = INSTACART_ANCHOR + day * 86_400 + orders["order_hour_of_day"].to_numpy(np.int64) * 3_600
    ts = pd.Series(order_ts, index=orders["order_id"].to_numpy())[rows["order_id"]].to_numpy()
    lines = (f"{u},{i},{t}\n" for u, i, t in zip(rows["user_id"].to_numpy(),
                                                   rows["product_id"].to_numpy(), ts))
    with _atomic(target) as dst:
        dst.write(b"user,item,ts\n")
        dst.write("".join(lines).encode())


BUILDERS = {"concatenate": concatenate, "instacart": instacart}


class _atomic:
    """`with _atomic(path) as f:` writes path.partial, renamed to path on success."""

    def __init__(self, target: Path):
        self.target, self.partial = target, target.with_name(target.name + ".partial")

    def __enter__(self):
        self.file = open(self.partial, "wb")
        return self.file

    def __exit__(self, kind, value, tb):
        self.file.close()
        if kind is None:
            self.partial.replace(self.target)
        else:
            self.partial.unlink(missing_ok=True)
        return False
