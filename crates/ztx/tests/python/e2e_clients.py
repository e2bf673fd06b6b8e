#!/usr/bin/env python3
"""Drives a running ztx server with real Binance clients: the official Binance Python
connector (binance-connector, `binance.spot.Spot`) and ccxt's `binance` exchange.

Run by tests/e2e_python.rs, which starts the server, creates the customers and keys, funds
them, and passes a JSON file describing them:

    python e2e_clients.py keygen DIR      # writes DIR/ed25519_private.pem and _public.pem
    python e2e_clients.py run CONFIG.json # the checks; exit status 0 only if all passed

No pytest: each check prints one line; a failed check is recorded and the run goes on
(a section that raises is recorded and the next section starts), and the exit status is 1
if anything failed. Money is compared exactly: decimal strings against decimal strings,
expected values computed with `Decimal`, never floats.
"""

import contextlib
import json
import sys
import time
import traceback
from decimal import ROUND_CEILING, Decimal

PASSED = 0
FAILED = []

E8 = Decimal("0.00000001")
FEE_BPS = Decimal(10)  # maker and taker fee of every market in the default configuration


def log(msg):
    print(msg, flush=True)


def check(ok, what):
    global PASSED
    if ok:
        PASSED += 1
        log(f"  ok   {what}")
    else:
        FAILED.append(what)
        log(f"  FAIL {what}")
    return ok


def eq(actual, expected, what):
    return check(actual == expected, f"{what}: got {actual!r}, want {expected!r}")


def d8(x):
    """A decimal amount as ztx and Binance print it: exactly 8 decimals."""
    q = Decimal(x).quantize(E8)
    assert q == Decimal(x), f"{x} has more than 8 decimals"
    return f"{q:.8f}"


def fee(amount):
    """The fee ztx charges on a fill: 10 bps of the received amount, rounded up."""
    return (Decimal(amount) * FEE_BPS / Decimal(10000)).quantize(E8, rounding=ROUND_CEILING)


def fdec(x):
    """A float that ccxt parsed from a decimal string, back as that decimal (repr is exact)."""
    return None if x is None else Decimal(repr(x))


def section(title):
    log(f"\n== {title}")


# --------------------------------------------------------------------------------------
# binance-connector helpers


def balances(spot):
    """{asset: (free, locked)} as the server's strings."""
    acct = spot.account()
    return {b["asset"]: (b["free"], b["locked"]) for b in acct["balances"]}


def expect_balances(spot, who, expected):
    """expected: {asset: (free, locked)} as Decimals or strings."""
    got = balances(spot)
    for asset, (free, locked) in expected.items():
        eq(got.get(asset), (d8(free), d8(locked)), f"{who} {asset} (free, locked)")
    return got


def client_error(fn, *args, **kwargs):
    from binance.error import ClientError

    try:
        result = fn(*args, **kwargs)
    except ClientError as e:
        return e
    return f"no error; the call returned {result!r}"


def expect_error(what, status, code, fn, *args, **kwargs):
    from binance.error import ClientError

    e = client_error(fn, *args, **kwargs)
    if not isinstance(e, ClientError):
        return check(False, f"{what}: want HTTP {status} code {code}, got {e}")
    return check(
        (e.status_code, e.error_code) == (status, code),
        f"{what}: HTTP {e.status_code} code {e.error_code} ({e.error_message!r}), "
        f"want HTTP {status} code {code}",
    )


@contextlib.contextmanager
def shifted_clock(offset_ms):
    """Makes binance-connector sign requests with a timestamp offset_ms from now."""
    import binance.api

    original = binance.api.get_timestamp
    binance.api.get_timestamp = lambda: original() + offset_ms
    try:
        yield
    finally:
        binance.api.get_timestamp = original


def filters_of(symbol_info):
    return {f["filterType"]: f for f in symbol_info["filters"]}


# --------------------------------------------------------------------------------------
# sections


def public_endpoints(cfg, spot):
    section("binance-connector: public market data (empty market)")
    eq(spot.ping(), {}, "ping")
    before = int(time.time() * 1000)
    server_time = spot.time()["serverTime"]
    after = int(time.time() * 1000)
    check(
        isinstance(server_time, int) and before - 5000 <= server_time <= after + 5000,
        f"time: serverTime {server_time} within 5 s of the local clock [{before}, {after}]",
    )

    info = spot.exchange_info()
    eq(
        sorted(s["symbol"] for s in info["symbols"]),
        ["BTCUSDT", "ETHBTC", "ETHUSDT"],
        "exchange_info() symbols",
    )
    eq(info.get("timezone"), "UTC", "exchange_info timezone")
    one = spot.exchange_info(symbol="BTCUSDT")
    eq([s["symbol"] for s in one["symbols"]], ["BTCUSDT"], "exchange_info(symbol=BTCUSDT)")
    two = spot.exchange_info(symbols=["BTCUSDT", "ETHUSDT"])
    eq(
        sorted(s["symbol"] for s in two["symbols"]),
        ["BTCUSDT", "ETHUSDT"],
        "exchange_info(symbols=[BTCUSDT, ETHUSDT]) (JSON array parameter)",
    )
    btc = one["symbols"][0]
    eq(
        (btc["baseAsset"], btc["quoteAsset"], btc["status"]),
        ("BTC", "USDT", "TRADING"),
        "BTCUSDT base, quote, status",
    )
    f = filters_of(btc)
    eq(f["PRICE_FILTER"]["tickSize"], "0.01000000", "BTCUSDT tickSize")
    eq(f["LOT_SIZE"]["stepSize"], "0.00001000", "BTCUSDT stepSize")
    eq(f["LOT_SIZE"]["minQty"], "0.00001000", "BTCUSDT minQty")
    notional = f.get("NOTIONAL") or f.get("MIN_NOTIONAL") or {}
    eq(notional.get("minNotional"), "5.00000000", "BTCUSDT minNotional")
    for t in ("LIMIT", "MARKET"):
        check(t in btc["orderTypes"], f"BTCUSDT orderTypes has {t}")

    depth = spot.depth("BTCUSDT", limit=5)
    eq((depth["bids"], depth["asks"]), ([], []), "depth of an empty book")
    check(isinstance(depth["lastUpdateId"], int), "depth lastUpdateId is an integer")
    eq(spot.trades("BTCUSDT"), [], "trades of a market without trades")
    eq(spot.klines("BTCUSDT", "1m"), [], "klines of a market without trades")
    t = spot.ticker_24hr("BTCUSDT")
    eq((t["symbol"], t["count"], t["volume"]), ("BTCUSDT", 0, "0.00000000"), "ticker_24hr, no trades")
    eq((t["firstId"], t["lastId"]), (-1, -1), "ticker_24hr firstId, lastId without trades")
    prices = spot.ticker_price()
    eq(sorted(p["symbol"] for p in prices), ["BTCUSDT", "ETHBTC", "ETHUSDT"], "ticker_price() symbols")
    eq(spot.ticker_price("BTCUSDT")["symbol"], "BTCUSDT", "ticker_price(BTCUSDT)")
    expect_error("depth of an unknown symbol", 400, -1121, spot.depth, "NOPEUSDT")


def connector_trading(cfg, a, b):
    """Customer A holds 100000 USDT and B 2 BTC when this starts."""
    section("binance-connector: trading between two customers (HMAC keys)")
    expect_balances(a, "A at start", {"USDT": ("100000", "0"), "BTC": ("0", "0")})
    expect_balances(b, "B at start", {"BTC": ("2", "0"), "USDT": ("0", "0")})

    # A rests a bid.
    bid = a.new_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
        quantity="0.02", price="50000", newClientOrderId="e2e-a-bid",
    )
    eq(bid["status"], "NEW", "A LIMIT GTC BUY 0.02 @ 50000 rests")
    eq(bid["clientOrderId"], "e2e-a-bid", "newClientOrderId is echoed")
    eq(
        (bid["origQty"], bid["executedQty"], bid["price"], bid["type"], bid["side"], bid["timeInForce"]),
        ("0.02000000", "0.00000000", "50000.00000000", "LIMIT", "BUY", "GTC"),
        "resting order fields",
    )
    bid_id = bid["orderId"]
    expect_balances(a, "A with the bid resting", {"USDT": ("99000", "1000")})
    got = a.get_order("BTCUSDT", orderId=bid_id)
    eq((got["orderId"], got["status"]), (bid_id, "NEW"), "get_order by orderId")
    got = a.get_order("BTCUSDT", origClientOrderId="e2e-a-bid")
    eq(got["orderId"], bid_id, "get_order by origClientOrderId")
    eq([o["orderId"] for o in a.get_open_orders("BTCUSDT")], [bid_id], "get_open_orders(BTCUSDT)")
    eq([o["orderId"] for o in a.get_open_orders()], [bid_id], "get_open_orders() of all symbols")
    eq(b.get_open_orders("BTCUSDT"), [], "B sees none of A's orders")
    expect_error("B querying A's order", 400, -2013, b.get_order, "BTCUSDT", orderId=bid_id)
    eq(a.depth("BTCUSDT")["bids"], [["50000.00000000", "0.02000000"]], "depth shows the bid")

    # B crosses with a limit sell below the bid: trades at the maker's price.
    sell = b.new_order(
        symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC",
        quantity="0.01", price="49000", newOrderRespType="FULL",
    )
    eq(sell["status"], "FILLED", "B LIMIT SELL 0.01 @ 49000 crossing the bid fills")
    eq(
        (sell["executedQty"], sell["cummulativeQuoteQty"]),
        ("0.01000000", "500.00000000"),
        "crossing sell executedQty, cummulativeQuoteQty (maker's price)",
    )
    fills = [(x["price"], x["qty"], x["commission"], x["commissionAsset"]) for x in sell["fills"]]
    eq(fills, [("50000.00000000", "0.01000000", d8(fee(500)), "USDT")], "crossing sell fills")
    got = a.get_order("BTCUSDT", orderId=bid_id)
    eq(
        (got["status"], got["executedQty"], got["cummulativeQuoteQty"]),
        ("PARTIALLY_FILLED", "0.01000000", "500.00000000"),
        "A's bid is partially filled",
    )
    a_btc = Decimal("0.01") - fee("0.01")
    b_usdt = Decimal(500) - fee(500)
    expect_balances(a, "A after the first fill", {"BTC": (a_btc, "0"), "USDT": ("99000", "500")})
    expect_balances(b, "B after the first fill", {"BTC": ("1.99", "0"), "USDT": (b_usdt, "0")})

    # B sells at market by quantity into the rest of the bid.
    mkt = b.new_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.005", newOrderRespType="FULL")
    eq(
        (mkt["status"], mkt["type"], mkt["executedQty"], mkt["cummulativeQuoteQty"]),
        ("FILLED", "MARKET", "0.00500000", "250.00000000"),
        "B MARKET SELL quantity=0.005",
    )
    eq(
        [(x["price"], x["qty"], x["commission"], x["commissionAsset"]) for x in mkt["fills"]],
        [("50000.00000000", "0.00500000", d8(fee(250)), "USDT")],
        "market sell fills",
    )
    a_btc += Decimal("0.005") - fee("0.005")
    b_usdt += Decimal(250) - fee(250)

    # B rests an ask; A buys at market by quote amount.
    ask = b.new_order(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.01", price="51000")
    eq(ask["status"], "NEW", "B LIMIT SELL 0.01 @ 51000 rests above the bid")
    ask_id = ask["orderId"]
    qbuy = a.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quoteOrderQty="255", newOrderRespType="FULL")
    eq(
        (qbuy["status"], qbuy["executedQty"], qbuy["cummulativeQuoteQty"]),
        ("FILLED", "0.00500000", "255.00000000"),
        "A MARKET BUY quoteOrderQty=255",
    )
    eq(qbuy.get("origQuoteOrderQty"), "255.00000000", "MARKET BUY origQuoteOrderQty")
    eq(
        [(x["price"], x["qty"], x["commission"], x["commissionAsset"]) for x in qbuy["fills"]],
        [("51000.00000000", "0.00500000", d8(fee("0.005")), "BTC")],
        "market buy fills",
    )
    a_btc += Decimal("0.005") - fee("0.005")
    b_usdt += Decimal(255) - fee(255)
    expect_balances(a, "A after three fills", {"BTC": (a_btc, "0"), "USDT": ("98745", "250")})
    expect_balances(b, "B after three fills", {"BTC": ("1.975", "0.005"), "USDT": (b_usdt, "0")})
    eq(d8(a_btc), "0.01998000", "A's BTC worked out by hand")
    eq(d8(b_usdt), "1003.99500000", "B's USDT worked out by hand")

    # Trade history, both sides.
    mine = a.my_trades("BTCUSDT")
    eq(
        [(t["price"], t["qty"], t["quoteQty"], t["commission"], t["commissionAsset"], t["isBuyer"], t["isMaker"])
         for t in mine],
        [
            ("50000.00000000", "0.01000000", "500.00000000", "0.00001000", "BTC", True, True),
            ("50000.00000000", "0.00500000", "250.00000000", "0.00000500", "BTC", True, True),
            ("51000.00000000", "0.00500000", "255.00000000", "0.00000500", "BTC", True, False),
        ],
        "A my_trades",
    )
    eq([t["orderId"] for t in mine[:2]], [bid_id, bid_id], "A's maker trades belong to the bid")
    theirs = b.my_trades("BTCUSDT")
    eq(
        [(t["price"], t["qty"], t["commission"], t["commissionAsset"], t["isBuyer"], t["isMaker"]) for t in theirs],
        [
            ("50000.00000000", "0.01000000", "0.50000000", "USDT", False, False),
            ("50000.00000000", "0.00500000", "0.25000000", "USDT", False, False),
            ("51000.00000000", "0.00500000", "0.25500000", "USDT", False, True),
        ],
        "B my_trades",
    )
    eq([t["id"] for t in mine], [t["id"] for t in theirs], "both sides see the same trade ids")
    eq([t["id"] for t in a.my_trades("BTCUSDT", limit=1)], [mine[-1]["id"]], "my_trades(limit=1) is the newest")
    eq([t["id"] for t in a.my_trades("BTCUSDT", fromId=mine[1]["id"])], [t["id"] for t in mine[1:]], "my_trades(fromId)")
    eq(a.my_trades("ETHUSDT"), [], "my_trades of another symbol")

    # Public data now reflects the trades.
    pub = a.trades("BTCUSDT")
    eq(
        [(t["id"], t["price"], t["qty"], t["quoteQty"], t["isBuyerMaker"]) for t in pub],
        [(t["id"], t["price"], t["qty"], t["quoteQty"], t["isMaker"]) for t in mine],
        "public trades (isBuyerMaker: A, the buyer, was maker twice)",
    )
    kl = a.klines("BTCUSDT", "1m")
    check(1 <= len(kl) <= 2, f"klines: 1 or 2 one-minute candles ({len(kl)})")
    eq(sum(Decimal(k[5]) for k in kl), Decimal("0.02"), "klines base volume")
    eq(sum(Decimal(k[7]) for k in kl), Decimal("1005"), "klines quote volume")
    eq(sum(k[8] for k in kl), 3, "klines trade count")
    eq(sum(Decimal(k[9]) for k in kl), Decimal("0.005"), "klines taker buy base volume")
    eq(max(Decimal(k[2]) for k in kl), Decimal(51000), "klines high")
    eq(min(Decimal(k[3]) for k in kl), Decimal(50000), "klines low")
    eq((kl[0][1], kl[-1][4]), ("50000.00000000", "51000.00000000"), "klines open and close")
    check(all(k[6] == k[0] + 59_999 for k in kl), "klines close time = open time + 59999")
    t = a.ticker_24hr("BTCUSDT")
    eq(
        (t["count"], t["volume"], t["quoteVolume"], t["lastPrice"], t["openPrice"], t["highPrice"], t["lowPrice"]),
        (3, "0.02000000", "1005.00000000", "51000.00000000", "50000.00000000", "51000.00000000", "50000.00000000"),
        "ticker_24hr after three trades",
    )
    eq(
        (t["bidPrice"], t["bidQty"], t["askPrice"], t["askQty"]),
        ("50000.00000000", "0.00500000", "51000.00000000", "0.00500000"),
        "ticker_24hr best bid and ask",
    )
    eq(t["lastId"], mine[-1]["id"], "ticker_24hr lastId is the last trade")
    # Binance: firstId is the first trade id in the window (-1 only when there is none).
    eq(t["firstId"], mine[0]["id"], "ticker_24hr firstId is the first trade in the window")
    eq(a.ticker_price("BTCUSDT")["price"], "51000.00000000", "ticker_price after trades")

    # Cancels.
    c = b.cancel_order("BTCUSDT", orderId=ask_id)
    eq((c["orderId"], c["status"], c["executedQty"]), (ask_id, "CANCELED", "0.00500000"), "B cancel_order")
    expect_balances(b, "B after cancelling", {"BTC": ("1.98", "0")})
    expect_error("cancelling it again", 400, -2011, b.cancel_order, "BTCUSDT", orderId=ask_id)
    cancelled = a.cancel_open_orders("BTCUSDT")
    eq(
        [(o["orderId"], o["status"], o["executedQty"]) for o in cancelled],
        [(bid_id, "CANCELED", "0.01500000")],
        "A cancel_open_orders",
    )
    expect_balances(a, "A after cancelling", {"BTC": (a_btc, "0"), "USDT": ("98995", "0")})
    eq((a.get_open_orders(), b.get_open_orders()), ([], []), "no open orders left")
    all_a = a.get_orders("BTCUSDT")
    eq(
        [(o["orderId"], o["type"], o["side"], o["status"], o["executedQty"]) for o in all_a],
        [(bid_id, "LIMIT", "BUY", "CANCELED", "0.01500000"), (qbuy["orderId"], "MARKET", "BUY", "FILLED", "0.00500000")],
        "A get_orders (allOrders)",
    )
    eq(len(b.get_orders("BTCUSDT")), 3, "B get_orders (allOrders) count")
    eq(a.get_orders("BTCUSDT", orderId=qbuy["orderId"])[0]["orderId"], qbuy["orderId"], "get_orders(orderId=) starts there")

    # Test orders: validated, not placed.
    eq(
        a.new_order_test(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="40000"),
        {},
        "new_order_test",
    )
    expect_error(
        "new_order_test off the tick size", 400, -1013, a.new_order_test,
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="40000.001",
    )
    expect_error(
        "an order below min notional", 400, -1013, a.new_order,
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.00001", price="40000",
    )
    expect_error(
        "an order beyond the balance", 400, -2010, b.new_order,
        symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="100", price="40000",
    )
    eq(len(a.get_orders("BTCUSDT")), 2, "test and rejected orders leave allOrders unchanged")
    expect_balances(a, "A unchanged by test orders", {"USDT": ("98995", "0")})

    # Binance: omitZeroBalances=true lists only the non-zero balances (A holds no ETH).
    eq(
        sorted(x["asset"] for x in a.account(omitZeroBalances="true")["balances"]),
        ["BTC", "USDT"],
        "account(omitZeroBalances=true) omits the zero ETH balance",
    )
    acct = a.account()
    eq((acct["accountType"], acct["canTrade"], acct["canWithdraw"]), ("SPOT", True, False), "account flags")
    check("SPOT" in acct["permissions"], "account permissions include SPOT")
    eq(acct["commissionRates"]["maker"], "0.00100000", "account commissionRates.maker")
    perms = a.api_key_permissions()
    eq(
        (perms["enableReading"], perms["enableSpotAndMarginTrading"], perms["enableWithdrawals"], perms["ipRestrict"]),
        (True, True, False, False),
        "api_key_permissions of a read,trade key",
    )
    from binance.spot import Spot

    limited = Spot(api_key=cfg["a"]["api_key"], api_secret=cfg["a"]["secret"], base_url=cfg["base_url"], show_limit_usage=True)
    usage = limited.ping()["limit_usage"]
    check("x-mbx-used-weight-1m" in usage, f"X-MBX-USED-WEIGHT-1M header is sent ({usage})")


def connector_ed25519(cfg, e):
    section("binance-connector: Ed25519 key")
    from binance.spot import Spot

    expect_balances(e, "E at start", {"USDT": ("1000", "0")})
    o = e.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="40000")
    eq(o["status"], "NEW", "Ed25519-signed LIMIT order")
    expect_balances(e, "E with an order resting", {"USDT": ("960", "40")})
    c = e.cancel_order("BTCUSDT", orderId=o["orderId"])
    eq(c["status"], "CANCELED", "Ed25519-signed cancel")
    expect_balances(e, "E after cancelling", {"USDT": ("1000", "0")})
    eq(e.api_key_permissions()["enableSpotAndMarginTrading"], True, "Ed25519 api_key_permissions")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    wrong = Spot(api_key=cfg["e"]["api_key"], private_key=other, base_url=cfg["base_url"])
    expect_error("Ed25519 signature from another private key", 400, -1022, wrong.account)


def connector_auth_errors(cfg):
    section("binance-connector: authentication and permission errors")
    from binance.spot import Spot

    url = cfg["base_url"]
    a = cfg["a"]
    bad = Spot(api_key=a["api_key"], api_secret=a["secret"][:-1] + ("y" if a["secret"][-1] != "y" else "z"), base_url=url)
    expect_error("wrong secret", 400, -1022, bad.account)
    good = Spot(api_key=a["api_key"], api_secret=a["secret"], base_url=url)
    with shifted_clock(-120_000):
        expect_error("timestamp 120 s old with recvWindow=5000", 400, -1021, good.account, recvWindow=5000)
    with shifted_clock(+120_000):
        expect_error("timestamp 120 s ahead", 400, -1021, good.account)
    with shifted_clock(-3_000):
        check(isinstance(good.account(recvWindow=5000), dict), "timestamp 3 s old with recvWindow=5000 is accepted")
    unknown = Spot(api_key="0" * 64, api_secret="whatever", base_url=url)
    expect_error("unknown API key", 401, -2015, unknown.account)
    ip = Spot(api_key=cfg["ip_restricted"]["api_key"], api_secret=cfg["ip_restricted"]["secret"], base_url=url)
    expect_error("key restricted to 10.9.9.9 used from 127.0.0.1", 401, -2015, ip.account)
    ro = Spot(api_key=cfg["read_only"]["api_key"], api_secret=cfg["read_only"]["secret"], base_url=url)
    check(isinstance(ro.account(), dict), "read-only key can read the account")
    perms = ro.api_key_permissions()
    eq(
        (perms["enableReading"], perms["enableSpotAndMarginTrading"]),
        (True, False),
        "api_key_permissions of a read-only key",
    )
    before = len(good.get_orders("BTCUSDT"))
    expect_error(
        "read-only key placing an order", 401, -2015, ro.new_order,
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="40000",
    )
    expect_error(
        "read-only key placing a test order", 401, -2015, ro.new_order_test,
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="40000",
    )
    expect_error("read-only key cancelling", 401, -2015, ro.cancel_open_orders, "BTCUSDT")
    eq(len(good.get_orders("BTCUSDT")), before, "refused orders were not placed")
    import requests

    r = requests.get(f"{url}/api/v3/account", params={"timestamp": int(time.time() * 1000), "signature": "00" * 32}, timeout=10)
    code = r.json().get("code") if r.headers.get("content-type", "").startswith("application/json") else None
    check(
        r.status_code in (400, 401) and code in (-2014, -2015, -1102),
        f"signed endpoint without X-MBX-APIKEY is refused (HTTP {r.status_code}: {r.text})",
    )


def make_ccxt(cfg, key):
    import ccxt

    ex = ccxt.binance(
        {
            "apiKey": key["api_key"],
            "secret": key.get("secret") or key.get("private_key_pem"),
            "enableRateLimit": False,
            "options": {
                # Spot only: no futures/options exchangeInfo, no margin pairs (sapi).
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                # The currency list comes from sapi capital endpoints that ztx has not.
                "fetchCurrencies": False,
                "adjustForTimeDifference": False,
                # ccxt's default is /api/v3/aggTrades, which ztx does not serve.
                "fetchTradesMethod": "publicGetTrades",
            },
        }
    )
    # Every URL that spot calls use: public and private are /api/v3, sapi for the key's
    # restrictions. Point them all at the local server.
    for name in ("public", "private", "v1", "sapi", "sapiV2", "sapiV3", "sapiV4"):
        path = ex.urls["api"][name].split("binance.com", 1)[1]
        ex.urls["api"][name] = cfg["base_url"] + path
    return ex


def ccxt_section(cfg, a_spot, b_spot):
    section("ccxt: markets, trading, balances")
    import ccxt

    ca = make_ccxt(cfg, cfg["a"])
    cb = make_ccxt(cfg, cfg["b"])
    markets = ca.load_markets()
    eq(sorted(markets), ["BTC/USDT", "ETH/BTC", "ETH/USDT"], "load_markets")
    m = markets["BTC/USDT"]
    eq((m["id"], m["base"], m["quote"], m["spot"], m["active"]), ("BTCUSDT", "BTC", "USDT", True, True), "BTC/USDT market")
    eq(
        (fdec(m["precision"]["price"]), fdec(m["precision"]["amount"])),
        (Decimal("0.01"), Decimal("0.00001")),
        "BTC/USDT precision (tick, step)",
    )
    eq(fdec(m["limits"]["cost"]["min"]), Decimal(5), "BTC/USDT min cost")
    eq(fdec(m["limits"]["amount"]["min"]), Decimal("0.00001"), "BTC/USDT min amount")
    eq(Decimal(ca.price_to_precision("BTC/USDT", 52000.004)), Decimal(52000), "price_to_precision")
    eq(Decimal(ca.amount_to_precision("BTC/USDT", 0.000019)), Decimal("0.00001"), "amount_to_precision")

    a0 = balances(a_spot)
    b0 = balances(b_spot)

    ask = cb.create_order("BTC/USDT", "limit", "sell", 0.01, 52000)
    eq((ask["status"], ask["side"], ask["type"]), ("open", "sell", "limit"), "ccxt B limit sell 0.01 @ 52000 rests")
    eq(fdec(ask["price"]), Decimal(52000), "ccxt order price")
    book = ca.fetch_order_book("BTC/USDT")
    eq([[fdec(p), fdec(q)] for p, q in book["asks"]], [[Decimal(52000), Decimal("0.01")]], "fetch_order_book asks")
    eq([o["id"] for o in cb.fetch_open_orders("BTC/USDT")], [ask["id"]], "fetch_open_orders")

    lim = ca.create_order("BTC/USDT", "limit", "buy", 0.004, 52000)
    eq(
        (lim["status"], fdec(lim["filled"]), fdec(lim["cost"]), fdec(lim["average"])),
        ("closed", Decimal("0.004"), Decimal(208), Decimal(52000)),
        "ccxt A crossing limit buy 0.004 @ 52000",
    )
    mkt = ca.create_order("BTC/USDT", "market", "buy", 0.002)
    eq(
        (mkt["status"], mkt["type"], fdec(mkt["filled"]), fdec(mkt["cost"])),
        ("closed", "market", Decimal("0.002"), Decimal(104)),
        "ccxt A market buy amount 0.002",
    )
    quote = ca.create_market_buy_order_with_cost("BTC/USDT", 52)
    eq(
        (quote["status"], fdec(quote["filled"]), fdec(quote["cost"])),
        ("closed", Decimal("0.001"), Decimal(52)),
        "ccxt A market buy with cost 52 (quoteOrderQty)",
    )
    fetched = cb.fetch_order(ask["id"], "BTC/USDT")
    eq(
        (fetched["status"], fdec(fetched["filled"]), fdec(fetched["remaining"])),
        ("open", Decimal("0.007"), Decimal("0.003")),
        "fetch_order of the partly filled ask",
    )
    cancelled = cb.cancel_order(ask["id"], "BTC/USDT")
    eq((cancelled["id"], cancelled["status"]), (ask["id"], "canceled"), "ccxt cancel_order")
    eq(cb.fetch_open_orders("BTC/USDT"), [], "no open orders after the cancel")
    try:
        ca.fetch_order("999999", "BTC/USDT")
        check(False, "fetch_order of an unknown id raises OrderNotFound")
    except ccxt.OrderNotFound:
        check(True, "fetch_order of an unknown id raises OrderNotFound")

    trades = ca.fetch_my_trades("BTC/USDT")[-3:]
    eq(
        [(t["side"], t["takerOrMaker"], fdec(t["price"]), fdec(t["amount"]), t["fee"]["currency"], fdec(t["fee"]["cost"]))
         for t in trades],
        [
            ("buy", "taker", Decimal(52000), Decimal("0.004"), "BTC", fee("0.004")),
            ("buy", "taker", Decimal(52000), Decimal("0.002"), "BTC", fee("0.002")),
            ("buy", "taker", Decimal(52000), Decimal("0.001"), "BTC", fee("0.001")),
        ],
        "fetch_my_trades (A)",
    )
    eq([t["order"] for t in trades], [lim["id"], mkt["id"], quote["id"]], "fetch_my_trades order ids")
    orders = {o["id"]: o["status"] for o in ca.fetch_orders("BTC/USDT")}
    eq([orders.get(i) for i in (lim["id"], mkt["id"], quote["id"])], ["closed"] * 3, "fetch_orders (A)")
    eq(cb.fetch_orders("BTC/USDT")[-1]["status"], "canceled", "fetch_orders (B) ends with the cancelled ask")

    bought = Decimal("0.007")
    paid = Decimal(364)
    a_fees = fee("0.004") + fee("0.002") + fee("0.001")
    b_fees = fee(208) + fee(104) + fee(52)
    want_a = {
        "BTC": Decimal(a0["BTC"][0]) + bought - a_fees,
        "USDT": Decimal(a0["USDT"][0]) - paid,
    }
    want_b = {
        "BTC": Decimal(b0["BTC"][0]) - bought,
        "USDT": Decimal(b0["USDT"][0]) + paid - b_fees,
    }
    for who, ex, spot, want in (("A", ca, a_spot, want_a), ("B", cb, b_spot, want_b)):
        bal = ex.fetch_balance()
        for asset, amount in want.items():
            eq(
                (fdec(bal[asset]["free"]), fdec(bal[asset]["used"]), fdec(bal[asset]["total"])),
                (amount, Decimal(0), amount),
                f"ccxt fetch_balance {who} {asset} (free, used, total)",
            )
        raw = {x["asset"]: x["free"] for x in bal["info"]["balances"]}
        eq({k: raw[k] for k in want}, {k: d8(v) for k, v in want.items()}, f"ccxt fetch_balance {who} raw strings")
        expect_balances(spot, f"{who} via binance-connector after ccxt", {k: (v, "0") for k, v in want.items()})

    ticker = ca.fetch_ticker("BTC/USDT")
    eq((ticker["symbol"], fdec(ticker["last"])), ("BTC/USDT", Decimal(52000)), "fetch_ticker last")
    eq(fdec(ticker["high"]), Decimal(52000), "fetch_ticker high")
    recent = ca.fetch_trades("BTC/USDT")
    eq([fdec(t["amount"]) for t in recent[-3:]], [Decimal("0.004"), Decimal("0.002"), Decimal("0.001")], "fetch_trades")
    eq({t["side"] for t in recent[-3:]}, {"buy"}, "fetch_trades taker side")
    ohlcv = ca.fetch_ohlcv("BTC/USDT", "1m")
    check(len(ohlcv) >= 1, f"fetch_ohlcv returns candles ({len(ohlcv)})")
    eq(fdec(ohlcv[-1][4]), Decimal(52000), "fetch_ohlcv last close")
    eq(sum(fdec(c[5]) for c in ohlcv), Decimal("0.027"), "fetch_ohlcv total volume")

    section("ccxt: errors and an Ed25519 key")
    wrong = make_ccxt(cfg, {"api_key": cfg["a"]["api_key"], "secret": "not-the-secret"})
    wrong.markets = ca.markets
    wrong.markets_by_id = ca.markets_by_id
    try:
        wrong.fetch_balance()
        check(False, "ccxt with a wrong secret raises AuthenticationError")
    except ccxt.AuthenticationError as e:
        check("-1022" in str(e), f"ccxt with a wrong secret raises AuthenticationError ({e})")
    ro = make_ccxt(cfg, cfg["read_only"])
    ro.markets = ca.markets
    ro.markets_by_id = ca.markets_by_id
    try:
        ro.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
        check(False, "ccxt read-only key placing an order raises AuthenticationError")
    except ccxt.AuthenticationError as e:
        check("-2015" in str(e), f"ccxt read-only key placing an order raises AuthenticationError ({e})")
    ce = make_ccxt(cfg, cfg["e"])
    ce.markets = ca.markets
    ce.markets_by_id = ca.markets_by_id
    eq(fdec(ce.fetch_balance()["USDT"]["free"]), Decimal(1000), "ccxt with an Ed25519 key: fetch_balance")


# --------------------------------------------------------------------------------------


def keygen(out_dir):
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with open(os.path.join(out_dir, "ed25519_private.pem"), "wb") as f:
        f.write(private)
    with open(os.path.join(out_dir, "ed25519_public.pem"), "wb") as f:
        f.write(public)


def run(config_path):
    from importlib import metadata

    from binance.spot import Spot

    with open(config_path) as f:
        cfg = json.load(f)
    url = cfg["base_url"]
    log(f"ztx at {url}; binance-connector {metadata.version('binance-connector')}, ccxt {metadata.version('ccxt')}")
    a = Spot(api_key=cfg["a"]["api_key"], api_secret=cfg["a"]["secret"], base_url=url)
    b = Spot(api_key=cfg["b"]["api_key"], api_secret=cfg["b"]["secret"], base_url=url)
    e = Spot(api_key=cfg["e"]["api_key"], private_key=cfg["e"]["private_key_pem"], base_url=url)

    sections = [
        ("public endpoints", lambda: public_endpoints(cfg, a)),
        ("trading", lambda: connector_trading(cfg, a, b)),
        ("Ed25519", lambda: connector_ed25519(cfg, e)),
        ("auth errors", lambda: connector_auth_errors(cfg)),
        ("ccxt", lambda: ccxt_section(cfg, a, b)),
    ]
    for name, fn in sections:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - report and go on with the next section
            detail = ""
            if hasattr(exc, "error_code"):
                detail = f" (HTTP {exc.status_code} code {exc.error_code}: {exc.error_message})"
            FAILED.append(f"section {name!r} raised {type(exc).__name__}: {exc}{detail}")
            log(f"  FAIL section {name!r} raised {type(exc).__name__}: {exc}{detail}")
            traceback.print_exc(file=sys.stdout)
    log(f"\ne2e clients: {PASSED} checks ok, {len(FAILED)} failed")
    for what in FAILED:
        log(f"  failed: {what}")
    return 1 if FAILED else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "keygen":
        keygen(argv[2])
        return 0
    if len(argv) == 3 and argv[1] == "run":
        return run(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
