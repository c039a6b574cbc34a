#!/usr/bin/env python3
"""Independent reference for flowcast's backtest: the same two simple strategies run with
hftbacktest (PyPI `hftbacktest`, 2.x) on a Binance recording from ../shared/data/binance.

Strategies (docs/backtest-crosscheck.md says exactly how hftbacktest models them):
  schedule  market orders on a fixed clock: the first at anchor + every, then every `every`,
            alternately buy and sell `qty` (buy first). A slot is taken by the first local feed at
            or after it; missed slots are skipped (as flowcast's MarketSchedule).
  quote     one post-only (GTX) buy at the best bid and one post-only sell at the best ask; when
            the touch moves a resting quote is cancelled and, once the cancel is confirmed, a new
            one is placed at the next feed (as flowcast's MicroMaker). `--quote micro` uses
            MicroMaker's micro-price rule instead (half spread and skew in ticks).
Both: RiskAverseQueueModel, NoPartialFillExchange, constant order latency (entry = response =
--latency-ns), trading-value fees (--maker-fee, --taker-fee as fractions: 0.0002 = 2 bps),
LinearAsset(1), HashMap depth. The data are converted with hftbacktest's own converter
(`hftbacktest.data.utils.binancefutures.convert`), which reads these recordings as they are.
Spot recordings carry no `T` in depth diffs and snapshots; they go through `spot_adapter`, which
only adds `T` (= `E` for diffs, = the receive time in ms for the snapshot, as flowcast's loader
does) and changes no price or quantity.

Clock: the converter shifts every local timestamp by `local_ts_offset_ns` so that the smallest
feed latency (local - exchange) in the file is 0 (`correct_local_timestamp`; this recording's
receive clock is behind the exchange's). All local times printed are on the file's own clock
(offset removed) unless named `*_hbt`.

Output: one JSON object (stdout, or --out FILE): settings, hftbacktest version, the offset, and
per strategy the fills (exchange ts ns, side, price, qty, maker, fee), orders, final position,
gross P&L, fees, net P&L marked at the final mid of the local book.

Usage:
  python3 tests/backtest/hbt_reference.py --file ../shared/data/binance/usdm-btcusdt_20240808.gz \
      --strategy both --every 10s --qty 0.001 --latency-ns 0 --maker-fee 0 --taker-fee 0
"""

import argparse
import gzip
import json
import os
import re
import sys
import tempfile

import numpy as np

try:
    import hftbacktest
    from hftbacktest import (
        BacktestAsset,
        HashMapMarketDepthBacktest,
        BUY,
        SELL,
        GTC,
        GTX,
        LIMIT,
        MARKET,
        NONE,
        NEW,
        FILLED,
        DEPTH_SNAPSHOT_EVENT,
        LOCAL_EVENT,
    )
    from hftbacktest.data.utils import binancefutures
except ImportError as e:  # the Rust test skips on this exit code
    sys.stderr.write(f"hbt_reference: hftbacktest is not installed ({e}); pip install hftbacktest\n")
    sys.exit(3)

from numba import njit

# (market, symbol) -> (tick size, lot size): the exchange's PRICE_FILTER / LOT_SIZE, the same
# instruments flowcast's Binance loader has built in (docs/data.md). Spot sizes: 8 decimals.
INSTRUMENTS = {
    ("usdm", "BTCUSDT"): (0.1, 0.001),
    ("usdm", "ETHUSDT"): (0.01, 0.001),
    ("spot", "BTCUSDT"): (0.01, 1e-8),
    ("spot", "ETHUSDT"): (0.01, 1e-8),
}

FILL_CAP = 1_000_000
ORDER_CAP = 1_000_000
UNTIL_END = 1 << 60


def duration_ns(s):
    """'10s', '250ms', '100us', '5ns', '1m' or a bare integer (ns)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|min)?\s*", str(s))
    if not m:
        raise SystemExit(f"hbt_reference: bad duration {s!r} (e.g. 10s, 250ms, 100us, 5000ns)")
    mul = {None: 1, "ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "min": 60_000_000_000}
    return int(round(float(m.group(1)) * mul[m.group(2)]))


def market_and_symbol(path):
    name = os.path.basename(path).lower()
    prefix = re.split(r"[-_.]", name)[0]
    market = {"spot": "spot", "usdm": "usdm", "um": "usdm"}.get(prefix)
    if market is None:
        raise SystemExit(f"hbt_reference: {path}: file name must start with spot- or usdm- (market)")
    sym = re.split(r"[-_.]", name)[1].upper()
    return market, sym


def snapshot_local_ts(path):
    """Receive time (file clock, ns) of the first REST snapshot line: the book is ready from it."""
    with gzip.open(path, "rt") as f:
        for n, line in enumerate(f, 1):
            ts, _, body = line.partition(" ")
            if body.startswith('{"lastUpdateId"'):
                return int(ts), n
    raise SystemExit(f"hbt_reference: {path}: no REST depth snapshot line (lastUpdateId) in the file")


def spot_adapter(path, out_path):
    """Spot recordings -> the futures form the converter expects, changing no price or quantity
    (levels are copied as the original strings):
    - depth diffs get `T` = `E` (the only time a spot diff carries);
    - trades get `X` = "MARKET" (the spot trade stream has no `X`; all its prints are market trades);
    - bookTicker lines are dropped (spot ones have no `e`; the converter ignores bookTicker anyway);
    - the snapshot gets `T` = (`E` of the diff that bridges it, `U` <= lastUpdateId+1 <= `u`) - 1 ms.
      A spot snapshot carries no time; its receive time is on the local clock, which in these
      recordings is ~1.27 s behind the exchange's, and would sort it before diffs it already contains.
    Returns the snapshot `T` it used (ms) or None."""
    last_id = None
    bridge_e = None
    with gzip.open(path, "rt") as f:
        for line in f:
            body = line.partition(" ")[2]
            if last_id is None and body.startswith('{"lastUpdateId"'):
                last_id = json.loads(body)["lastUpdateId"]
            elif last_id is not None and '"depthUpdate"' in body:
                d = json.loads(body)["data"]
                if d["U"] <= last_id + 1 <= d["u"]:
                    bridge_e = d["E"]
                    break
    with gzip.open(path, "rt") as f, gzip.open(out_path, "wt") as g:
        for line in f:
            ts, _, body = line.rstrip("\n").partition(" ")
            msg = json.loads(body)
            data = msg.get("data")
            if data is not None:
                e = data.get("e")
                if e is None:
                    continue
                if e == "depthUpdate" and "T" not in data:
                    data["T"] = data["E"]
                elif e == "trade" and "X" not in data:
                    data["X"] = "MARKET"
            elif "lastUpdateId" in msg and "T" not in msg:
                msg["T"] = (bridge_e - 1) if bridge_e is not None else int(ts) // 1_000_000
            g.write(f"{ts} {json.dumps(msg, separators=(',', ':'))}\n")
    return None if bridge_e is None else bridge_e - 1


def convert(path, market):
    """hftbacktest's converter, its prints sent to stderr (numba prints to fd 1 directly)."""
    src = path
    tmp = None
    if market == "spot":
        tmp = tempfile.NamedTemporaryFile(suffix=".gz", delete=False)
        tmp.close()
        spot_adapter(path, tmp.name)
        src = tmp.name
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        data = binancefutures.convert(src, combined_stream=True, base_latency=0)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        if tmp is not None:
            os.unlink(tmp.name)
    return data


# ---------------------------------------------------------------------------------------------
# Strategies (njit: hftbacktest's backtester objects are numba jitclasses)
# ---------------------------------------------------------------------------------------------


@njit
def _log(olog, oid, now, side, price_tick):
    if oid < olog.shape[0]:
        olog[oid, 0] = now
        olog[oid, 1] = side
        olog[oid, 2] = price_tick


@njit
def _collect(hbt, f_ts, f_local, f_side, f_px, f_qty, f_maker, f_oid, f_sent, olog, nf, counts):
    """Records every order that reached a final state since the last call (fills with their
    exchange time), then drops them from the local order table. counts: [expired, cancelled]."""
    orders = hbt.orders(0)
    vals = orders.values()
    while vals.has_next():
        o = vals.get()
        st = o.status
        k = o.order_id
        if k < olog.shape[0] and st != NEW and st != NONE:
            olog[k, 3] = st
            olog[k, 4] = o.exch_timestamp
        if st == FILLED:
            if nf < f_ts.shape[0]:
                f_ts[nf] = o.exch_timestamp
                f_local[nf] = hbt.current_timestamp
                f_side[nf] = o.side
                f_px[nf] = o.exec_price_tick
                f_qty[nf] = o.exec_qty
                f_maker[nf] = o.arr[0].maker
                f_oid[nf] = o.order_id
                f_sent[nf] = o.local_timestamp
            nf += 1
        elif st == 2:  # EXPIRED (post-only that would take)
            counts[0] += 1
        elif st == 4:  # CANCELED
            counts[1] += 1
    hbt.clear_inactive_orders(0)
    return nf


@njit
def run_schedule(hbt, ready_hbt, first_hbt, every, qty, f_ts, f_local, f_side, f_px, f_qty, f_maker, f_oid, f_sent, olog, counts, marks):
    """marks: [last mid ticks, orders submitted]."""
    nf = 0
    next_t = first_hbt
    buy = True
    oid = 0
    last_mid = np.nan
    while True:
        r = hbt.wait_next_feed(False, UNTIL_END)
        nf = _collect(hbt, f_ts, f_local, f_side, f_px, f_qty, f_maker, f_oid, f_sent, olog, nf, counts)
        if r != 2:
            break
        now = hbt.current_timestamp
        d = hbt.depth(0)
        bb, ba = d.best_bid_tick, d.best_ask_tick
        if now < ready_hbt or bb >= ba or bb <= -(1 << 62) or ba >= (1 << 62):
            continue
        last_mid = (bb + ba) / 2.0
        if now < next_t:
            continue
        next_t = next_t + every * ((now - next_t) // every + 1)
        oid += 1
        if buy:
            _log(olog, oid, now, 1, ba)
            hbt.submit_buy_order(0, oid, d.best_ask, qty, GTC, MARKET, False)
        else:
            _log(olog, oid, now, -1, bb)
            hbt.submit_sell_order(0, oid, d.best_bid, qty, GTC, MARKET, False)
        buy = not buy
    marks[0] = last_mid
    marks[1] = oid
    return nf


@njit
def run_quote(hbt, ready_hbt, qty, lot, micro, half_spread, skew, f_ts, f_local, f_side, f_px, f_qty, f_maker, f_oid, f_sent, olog, counts, marks):
    """One GTX order per side at the touch (or MicroMaker's rule when `micro`); requote = cancel,
    then a new order at a later feed once the cancel is confirmed. marks: [last mid, submitted,
    cancels sent]."""
    nf = 0
    oid = 0
    cancels = 0
    last_mid = np.nan
    while True:
        r = hbt.wait_next_feed(False, UNTIL_END)
        nf = _collect(hbt, f_ts, f_local, f_side, f_px, f_qty, f_maker, f_oid, f_sent, olog, nf, counts)
        if r != 2:
            break
        now = hbt.current_timestamp
        d = hbt.depth(0)
        bb, ba = d.best_bid_tick, d.best_ask_tick
        if now < ready_hbt or bb >= ba or bb <= -(1 << 62) or ba >= (1 << 62):
            continue
        last_mid = (bb + ba) / 2.0
        if micro:
            qb = d.best_bid_qty / lot
            qa = d.best_ask_qty / lot
            if qa + qb <= 0:
                continue
            mu = (bb * qa + ba * qb) / (qa + qb)
            inv = hbt.position(0) / qty
            shift = skew * inv
            tb = min(np.int64(np.floor(mu - half_spread - shift)), ba - 1)
            ta = max(np.int64(np.ceil(mu + half_spread - shift)), bb + 1)
        else:
            tb = bb
            ta = ba
        has_b = False
        has_a = False
        orders = hbt.orders(0)
        vals = orders.values()
        while vals.has_next():
            o = vals.get()
            if o.side == BUY:
                has_b = True
                target = tb
            else:
                has_a = True
                target = ta
            if o.status == NEW and o.req == NONE and o.price_tick != target:
                hbt.cancel(0, o.order_id, False)
                cancels += 1
        if not has_b:
            oid += 1
            _log(olog, oid, now, 1, tb)
            hbt.submit_buy_order(0, oid, tb * d.tick_size, qty, GTX, LIMIT, False)
        if not has_a:
            oid += 1
            _log(olog, oid, now, -1, ta)
            hbt.submit_sell_order(0, oid, ta * d.tick_size, qty, GTX, LIMIT, False)
    marks[0] = last_mid
    marks[1] = oid
    marks[2] = cancels
    return nf


def build(data, args, tick, lot):
    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(args.latency_ns, args.response_latency_ns)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(args.maker_fee, args.taker_fee)
        .tick_size(tick)
        .lot_size(lot)
        .last_trades_capacity(0)
    )
    return HashMapMarketDepthBacktest([asset])


def run_one(name, data, args, tick, lot, ready_hbt, anchor_hbt, offset):
    hbt = build(data, args, tick, lot)
    f_ts = np.zeros(FILL_CAP, np.int64)
    f_local = np.zeros(FILL_CAP, np.int64)
    f_side = np.zeros(FILL_CAP, np.int8)
    f_px = np.zeros(FILL_CAP, np.int64)
    f_qty = np.zeros(FILL_CAP, np.float64)
    f_maker = np.zeros(FILL_CAP, np.bool_)
    f_oid = np.zeros(FILL_CAP, np.uint64)
    f_sent = np.zeros(FILL_CAP, np.int64)
    # Per order id: [sent (local), side, price ticks, final status, exchange time of the final state].
    olog = np.zeros((ORDER_CAP, 5), np.int64)
    counts = np.zeros(2, np.int64)
    marks = np.zeros(3, np.float64)
    if name == "schedule":
        nf = run_schedule(hbt, ready_hbt, anchor_hbt + args.every_ns, args.every_ns, args.qty, f_ts, f_local, f_side, f_px, f_qty, f_maker, f_oid, f_sent, olog, counts, marks)
    else:
        nf = run_quote(
            hbt, ready_hbt, args.qty, lot, args.quote == "micro", args.half_spread_ticks, args.skew_ticks,
            f_ts, f_local, f_side, f_px, f_qty, f_maker, f_oid, f_sent, olog, counts, marks,
        )
    if nf > FILL_CAP:
        raise SystemExit(f"hbt_reference: {nf} fills exceed the buffer ({FILL_CAP})")
    sv = hbt.state_values(0)
    position, balance, fee_total, num_trades = sv.position, sv.balance, sv.fee, sv.num_trades
    hbt.close()

    fills = []
    fees = 0.0
    cash = 0.0
    lots_pos = 0
    for k in range(nf):
        side = "buy" if f_side[k] == BUY else "sell"
        px = float(f"{f_px[k] * tick:.10f}")
        q = float(f_qty[k])
        maker = bool(f_maker[k])
        notional = px * q
        fee = (args.maker_fee if maker else args.taker_fee) * notional
        fees += fee
        sign = 1 if side == "buy" else -1
        cash -= sign * notional
        lots_pos += sign * int(round(q / lot))
        fills.append({
            "order_id": int(f_oid[k]),
            "ts_exchange": int(f_ts[k]),
            "ts_local": int(f_local[k]) - offset,
            "ts_sent_local": int(f_sent[k]) - offset,
            "side": side,
            "price": px,
            "price_ticks": int(f_px[k]),
            "qty": q,
            "lots": int(round(q / lot)),
            "maker": maker,
            "fee": fee,
        })
    fills.sort(key=lambda f: (f["ts_exchange"], f["order_id"]))
    mid_ticks = float(marks[0])
    mid = mid_ticks * tick
    gross = cash + lots_pos * lot * mid
    out = {
        "fills": fills,
        "fill_count": nf,
        "maker_fills": sum(1 for f in fills if f["maker"]),
        "taker_fills": sum(1 for f in fills if not f["maker"]),
        "orders": int(marks[1]),
        "expired_post_only": int(counts[0]),
        "cancelled": int(counts[1]),
        "final_position": position,
        "final_position_lots": lots_pos,
        "final_mid": mid,
        "final_mid_ticks": mid_ticks,
        "gross_pnl": gross,
        "fees": fees,
        "net_pnl": gross - fees,
        # hftbacktest's own account (local state from the responses), for a consistency check.
        "hbt_state": {"position": position, "balance": balance, "fee": fee_total, "num_trades": int(num_trades),
                      "equity_at_final_mid": balance + position * mid - fee_total},
    }
    if name == "quote":
        out["cancels_sent"] = int(marks[2])
    if args.orders:
        names = {1: "new", 2: "expired", 3: "filled", 4: "cancelled", 5: "partially_filled", 6: "rejected"}
        out["order_log"] = [
            {"order_id": k, "ts_sent_local": int(olog[k, 0]) - offset, "side": "buy" if olog[k, 1] == 1 else "sell",
             "price_ticks": int(olog[k, 2]), "status": names.get(int(olog[k, 3]), "open"), "ts_done_exchange": int(olog[k, 4])}
            for k in range(1, min(int(marks[1]) + 1, ORDER_CAP))
        ]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", required=True, help="Binance recording (.gz), e.g. ../shared/data/binance/usdm-btcusdt_20240808.gz")
    p.add_argument("--strategy", choices=["schedule", "quote", "both"], default="both")
    p.add_argument("--every", default="10s", help="schedule interval (10s, 500ms, ... or ns)")
    p.add_argument("--anchor-ns", type=int, default=None,
                   help="schedule clock start, file clock (ns); default: the snapshot line's receive time")
    p.add_argument("--qty", type=float, default=None, help="order size in base units (default: one lot)")
    p.add_argument("--latency-ns", type=int, default=0, help="order entry = response latency (ns)")
    p.add_argument("--response-latency-ns", type=int, default=None, help="response latency if different from --latency-ns")
    p.add_argument("--maker-fee", type=float, default=0.0, help="fraction of notional, e.g. 0.0002 (negative = rebate)")
    p.add_argument("--taker-fee", type=float, default=0.0, help="fraction of notional, e.g. 0.0005")
    p.add_argument("--quote", choices=["touch", "micro"], default="touch", help="quote prices: best bid/ask, or MicroMaker's rule")
    p.add_argument("--half-spread-ticks", type=float, default=0.5, help="--quote micro only")
    p.add_argument("--skew-ticks", type=float, default=0.0, help="--quote micro only")
    p.add_argument("--tick-size", type=float, default=None)
    p.add_argument("--lot-size", type=float, default=None)
    p.add_argument("--no-fills", action="store_true", help="omit the fill lists (summaries only)")
    p.add_argument("--orders", action="store_true", help="add every order's life (order_log)")
    p.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    p.add_argument("--time-runs", type=int, default=0,
                   help="after the (JIT-warming) run, time this many more runs of each strategy; reports the best as rows/s")
    args = p.parse_args()

    if not os.path.isfile(args.file):
        raise SystemExit(f"hbt_reference: --file {args.file}: no such file")
    market, sym = market_and_symbol(args.file)
    tick, lot = INSTRUMENTS.get((market, sym), (args.tick_size, args.lot_size))
    tick = args.tick_size or tick
    lot = args.lot_size or lot
    if tick is None or lot is None:
        raise SystemExit(f"hbt_reference: {market} {sym}: unknown instrument; pass --tick-size and --lot-size")
    if args.qty is None:
        args.qty = lot
    if args.response_latency_ns is None:
        args.response_latency_ns = args.latency_ns
    if args.latency_ns < 0 or args.response_latency_ns < 0:
        raise SystemExit("hbt_reference: latencies must be >= 0")
    args.every_ns = duration_ns(args.every)
    if args.every_ns <= 0:
        raise SystemExit("hbt_reference: --every must be positive")

    snap_local, snap_line = snapshot_local_ts(args.file)
    data = convert(args.file, market)
    # The converter's local-clock shift, read off the snapshot rows (their raw receive time is known).
    snap_rows = data[(data["ev"] & DEPTH_SNAPSHOT_EVENT == DEPTH_SNAPSHOT_EVENT) & (data["ev"] & LOCAL_EVENT == LOCAL_EVENT)]
    offset = int(snap_rows["local_ts"].min()) - snap_local
    anchor = args.anchor_ns if args.anchor_ns is not None else snap_local

    result = {
        "hftbacktest_version": hftbacktest.__version__,
        "file": os.path.abspath(args.file),
        "market": market,
        "symbol": sym,
        "rows": int(len(data)),
        "local_ts_offset_ns": offset,
        "snapshot_local_ns": snap_local,
        "snapshot_line": snap_line,
        "settings": {
            "tick_size": tick,
            "lot_size": lot,
            "qty": args.qty,
            "every_ns": args.every_ns,
            "anchor_local_ns": anchor,
            "first_order_at_local_ns": anchor + args.every_ns,
            "entry_latency_ns": args.latency_ns,
            "response_latency_ns": args.response_latency_ns,
            "maker_fee": args.maker_fee,
            "taker_fee": args.taker_fee,
            "quote": args.quote,
            "half_spread_ticks": args.half_spread_ticks if args.quote == "micro" else None,
            "skew_ticks": args.skew_ticks if args.quote == "micro" else None,
            "exchange_model": "NoPartialFillExchange",
            "queue_model": "RiskAdverseQueueModel",
            "asset_type": "LinearAsset(1.0)",
            "fee_model": "TradingValueFeeModel(CommonFees)",
            "depth": "HashMapMarketDepth",
            "converter": "hftbacktest.data.utils.binancefutures.convert(combined_stream=True, base_latency=0)"
                         + (" after spot_adapter" if market == "spot" else ""),
        },
        "strategies": {},
    }
    ready_hbt = snap_local + offset
    names = ["schedule", "quote"] if args.strategy == "both" else [args.strategy]
    for name in names:
        r = run_one(name, data, args, tick, lot, ready_hbt, anchor + offset, offset)
        if args.time_runs > 0:
            import time
            best = float("inf")
            for _ in range(args.time_runs):
                t0 = time.perf_counter()
                run_one(name, data, args, tick, lot, ready_hbt, anchor + offset, offset)
                best = min(best, time.perf_counter() - t0)
            r["timing"] = {"runs": args.time_runs, "best_seconds": best, "rows_per_s": len(data) / best}
        if args.no_fills:
            r.pop("fills")
        result["strategies"][name] = r

    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
