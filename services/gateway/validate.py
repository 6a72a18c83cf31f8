"""Static checks of order-entry requests, before anything reaches the matcher.

The gateway rejects what it can judge alone (fields, symbol, tick, lot, size); the
engine still checks everything that depends on state (price band, position and
open-order limits, whose order it is), so a bug here can never let bad orders in.
"""

from __future__ import annotations

import msgspec

from services.common.bus import CancelOrder, NewOrder, ReplaceOrder
from services.common.config import Config
from services.common.wire import CancelRequest, OrdType, PlaceOrder, Reject, ReplaceRequest, Tif

MAX_PRICE = 10**15  # price units: a hundred billion dollars, far past any band
MAX_ORDER_ID = 2**63
REF_CHARS = 40  # a reject quotes at most this much of an id or a name in ``ref``
# requests whose element 1 is the client order id (or, signup/login, the account name)
REF_TAGS = frozenset({"order", "cancel", "replace", "change_password", "admin", "signup", "login"})


def readable_ref(payload: bytes) -> str:
    """The client order id (or name) of a frame that did not decode as a request, if it
    can be read at all: a reject then names what it refuses. A token is never quoted."""
    try:
        raw = msgspec.msgpack.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError, TypeError):
        return ""
    # each type is checked before use: any element may be anything (an Ext is unhashable)
    if (
        type(raw) is list
        and len(raw) > 1
        and type(raw[0]) is str
        and raw[0] in REF_TAGS
        and type(raw[1]) is str
    ):
        return raw[1][:REF_CHARS]
    return ""


def cl_ord_id_ok(cl_ord_id: str) -> bool:
    return 1 <= len(cl_ord_id) <= 36 and cl_ord_id.isascii() and cl_ord_id.isprintable()


def check_cl_ord_id(req) -> int:
    return 0 if cl_ord_id_ok(req.cl_ord_id) else Reject.BAD_CL_ORD_ID


def check_amount(cfg: Config, amount: int) -> int:
    """An operator's deposit (> 0) or withdrawal (< 0) in price units."""
    return 0 if 0 < abs(amount) <= cfg.risk.max_cash else Reject.BAD_AMOUNT


def _price_ok(price: int, tick: int) -> bool:
    return 0 < price <= MAX_PRICE and price % tick == 0


RESTING = (Tif.GTC, Tif.DAY, Tif.GTD)  # the times in force a post-only order may have


def check_order(cfg: Config, req: PlaceOrder) -> int:
    """0, or the reject code for a new order."""
    if not cl_ord_id_ok(req.cl_ord_id):
        return Reject.BAD_CL_ORD_ID
    spec = cfg.symbols.get(req.symbol)
    if spec is None:
        return Reject.UNKNOWN_SYMBOL
    if req.qty <= 0 or req.qty % spec.lot:
        return Reject.BAD_QTY
    if req.qty > cfg.risk.max_order_qty:
        return Reject.MAX_ORDER_SIZE
    if req.ord_type == OrdType.LIMIT:
        if not _price_ok(req.price, spec.tick):
            return Reject.BAD_PRICE
        if req.post_only and req.tif not in RESTING:
            return Reject.BAD_TIF
    elif req.tif in (Tif.GTC, Tif.GTD) or req.post_only:  # a market order never carries over
        return Reject.BAD_TIF
    elif req.price != 0:  # a market order names no price (the engine collars it)
        return Reject.BAD_PRICE
    if (req.tif == Tif.GTD) != (req.expire_date != 0):  # the date is the engine's to check
        return Reject.BAD_EXPIRE_DATE
    return 0


def check_cancel(req: CancelRequest) -> int:
    if not cl_ord_id_ok(req.cl_ord_id):
        return Reject.BAD_CL_ORD_ID
    if not 0 < req.order_id < MAX_ORDER_ID:
        return Reject.UNKNOWN_ORDER
    return 0


def check_replace(cfg: Config, req: ReplaceRequest) -> int:
    if not cl_ord_id_ok(req.cl_ord_id):
        return Reject.BAD_CL_ORD_ID
    if not 0 < req.order_id < MAX_ORDER_ID:
        return Reject.UNKNOWN_ORDER
    if req.qty <= 0:
        return Reject.BAD_QTY
    if req.qty > cfg.risk.max_order_qty:
        return Reject.MAX_ORDER_SIZE
    if not 0 < req.price <= MAX_PRICE:
        return Reject.BAD_PRICE
    return 0


def to_command(account: int, req) -> NewOrder | CancelOrder | ReplaceOrder:
    if isinstance(req, PlaceOrder):
        return NewOrder(
            account,
            req.cl_ord_id,
            req.symbol,
            req.side,
            req.qty,
            req.price,
            req.ord_type,
            req.tif,
            req.post_only,
            req.stp,
            req.expire_date,
        )
    if isinstance(req, CancelRequest):
        return CancelOrder(account, req.cl_ord_id, req.order_id)
    return ReplaceOrder(account, req.cl_ord_id, req.order_id, req.price, req.qty)
