"""The market maker's quoting logic, pure: no sockets, no clock, no global randomness.

The seed's bot posted 10 orders a side at fair value plus fades of 0.05 to 0.50 (plus a
little noise), sizes drawn around a base, again and again. Here:

- ``fair_value`` picks the price to quote around: the last trade, else the mid of
  everybody else's book (the public book less our own quotes), else the reference.
- ``ladder`` lays out the wanted quotes: level ``i`` (0-based) sits ``(i + 1) * step +
  noise[i] * tick`` either side of a centre, where the centre is the fair value moved
  against our inventory (``skew`` price units per share, capped at the ladder's width).
  Bid and ask of a level share the level's noise, so the book is symmetric around
  the centre. Sizes respect the lot, the largest order size, and the position limit
  counting open orders (as the engine does); levels outside the price band are left
  out.
- ``plan`` compares the wanted quotes with the live ones slot by slot and says what
  to send: a ``replace`` for a quote whose price moved or that is mostly filled, a
  ``cancel`` for a slot no longer wanted, a ``place`` for an empty slot. The number of
  open orders never exceeds the number of slots.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from clients.settings import SymbolSpec
from services.common.wire import Side

BUY, SELL = Side.BUY, Side.SELL
Key = tuple[Side, int]  # (side, level)


@dataclass(frozen=True, slots=True)
class QuoteParams:
    levels: int = 10  # per side
    step: int = 500  # price units between levels (0.05)
    noise_ticks: int = 2  # each level moves out by 0..noise_ticks ticks
    size: int = 100  # base size in shares
    size_sd: float = 0.2  # sizes ~ gauss(size, size * size_sd)
    skew: int = 1  # price units the centre moves per share of inventory
    max_position: int = 1_000_000  # |position + open orders on one side| stays within
    max_order_qty: int = 100_000
    sides: tuple[Side, ...] = (BUY, SELL)
    refill: float = 0.5  # replace a partly filled quote when under this share is left


@dataclass(frozen=True, slots=True)
class Quote:
    price: int
    qty: int


@dataclass(slots=True)
class Live:
    """What we know of one slot's order: ``order_id`` 0 means none."""

    order_id: int = 0
    price: int = 0
    qty: int = 0
    pending: str = ""  # cl_ord_id of a request not answered yet


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # "place", "replace", "cancel"
    key: Key
    price: int = 0
    qty: int = 0
    order_id: int = 0


@dataclass(slots=True)
class Draws:
    """The random part of a ladder (noise per level, size per slot), redrawn only when
    the bot refreshes its quotes, so an unchanged fair value sends nothing."""

    noise: list[int] = field(default_factory=list)
    sizes: dict[Key, int] = field(default_factory=dict)

    @classmethod
    def draw(cls, rng: random.Random, params: QuoteParams, lot: int) -> Draws:
        noise = [rng.randint(0, params.noise_ticks) for _ in range(params.levels)]
        sizes = {}
        for side in (BUY, SELL):
            for level in range(params.levels):
                raw = rng.gauss(params.size, params.size * params.size_sd)
                sizes[(side, level)] = max(lot, round(raw / lot) * lot)
        return cls(noise, sizes)


def step_for(spec: SymbolSpec, step: int, levels: int) -> int:
    """The fade step on the symbol's tick, narrowed so the ladder fits inside half the
    price band (a 0.05 step means nothing for a $0.50 stock)."""
    half_band = spec.reference * spec.band_bps // 10_000
    step = min(step, half_band // (levels + 1))
    return max(spec.tick, step // spec.tick * spec.tick)


def round_to_tick(price: int, tick: int) -> int:
    return (price + tick // 2) // tick * tick


def band(spec: SymbolSpec, around: int) -> tuple[int, int]:
    """The engine's static price band around the reference (trades do not move it)."""
    return (
        -(-around * (10_000 - spec.band_bps) // 10_000),
        around * (10_000 + spec.band_bps) // 10_000,
    )


def feed_agrees(
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    own: dict[tuple[Side, int], int],
    depth: int = 10,
) -> bool:
    """Whether the public book shows every one of our orders that it should (those
    within its top ``depth`` levels). Our reports and the feed travel separately; while
    one is ahead of the other, a level we just left would look like someone else's,
    so the book is not used for a fair value until they agree again."""
    for (side, price), qty in own.items():
        levels = bids if side == BUY else asks
        if len(levels) >= depth and (
            price < levels[-1][0] if side == BUY else price > levels[-1][0]
        ):
            continue  # below the levels the feed keeps
        if dict(levels).get(price, 0) < qty:
            return False
    return True


def fair_value(
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    own: dict[tuple[Side, int], int],
    last_trade: int,
    reference: int,
    tick: int,
) -> tuple[int, str]:
    """(fair value on the tick, where it came from: "trade", "mid" or "reference").

    The last trade comes first: it is a fact nobody's quotes can move. The mid of the
    others' book would not do first: two makers each quoting around the other's mid,
    each leaning on its inventory, would walk each other away without a trade.
    ``own`` is our open size per (side, price): what is left of a level once it is
    taken out belongs to someone else."""
    if last_trade:
        return round_to_tick(last_trade, tick), "trade"
    others_bid = next((p for p, q in bids if q > own.get((BUY, p), 0)), 0)
    others_ask = next((p for p, q in asks if q > own.get((SELL, p), 0)), 0)
    if others_bid and others_ask and others_bid < others_ask:
        return round_to_tick((others_bid + others_ask) // 2, tick), "mid"
    return reference, "reference"


def centre(fair: int, position: int, params: QuoteParams, step: int, tick: int) -> int:
    """Fair value moved against the inventory: long lowers both sides, short raises."""
    width = step * params.levels
    skew = max(-width, min(width, params.skew * position))
    return max(tick, round_to_tick(fair - skew, tick))


def ladder(
    spec: SymbolSpec,
    params: QuoteParams,
    fair: int,
    position: int,
    draws: Draws,
    band_around: int | None = None,
) -> tuple[int, dict[Key, Quote]]:
    """(centre, the wanted quotes by slot)."""
    step = step_for(spec, params.step, params.levels)
    mid = centre(fair, position, params, step, spec.tick)
    lo, hi = band(spec, band_around or fair)
    room = {BUY: params.max_position - position, SELL: params.max_position + position}
    cap = max(spec.lot, min(params.max_order_qty, params.max_position) // spec.lot * spec.lot)
    wanted: dict[Key, Quote] = {}
    for side in params.sides:
        sign = -1 if side == BUY else 1
        for level in range(params.levels):
            offset = (level + 1) * step + draws.noise[level] * spec.tick
            price = mid + sign * offset
            if price <= 0 or price < lo or price > hi:
                continue
            qty = min(draws.sizes[(side, level)], cap, room[side] // spec.lot * spec.lot)
            if qty <= 0:
                continue
            room[side] -= qty
            wanted[(side, level)] = Quote(price, qty)
    return mid, wanted


def plan(wanted: dict[Key, Quote], live: dict[Key, Live], refill: float = 0.5) -> list[Action]:
    """What to send so the live quotes become the wanted ones, in a safe order:
    cancels and size cuts first (they free risk), then moves away from the other side,
    then moves towards it, then new orders; slots with a request in flight wait."""
    actions: list[tuple[int, Action]] = []
    for key in sorted(set(wanted) | set(live)):
        slot = live.get(key)
        if slot is not None and slot.pending:
            continue
        want = wanted.get(key)
        has_order = slot is not None and slot.order_id
        if want is None:
            if has_order:
                actions.append((0, Action("cancel", key, order_id=slot.order_id)))
            continue
        if not has_order:
            actions.append((4, Action("place", key, want.price, want.qty)))
            continue
        if want.price == slot.price:
            if slot.qty > want.qty:  # a size cut keeps the queue position
                actions.append((1, Action("replace", key, want.price, want.qty, slot.order_id)))
            elif slot.qty < want.qty * refill:
                actions.append((3, Action("replace", key, want.price, want.qty, slot.order_id)))
            continue
        side = key[0]
        away = want.price < slot.price if side == BUY else want.price > slot.price
        rank = 2 if away else 3
        actions.append((rank, Action("replace", key, want.price, want.qty, slot.order_id)))
    actions.sort(key=lambda a: a[0])
    return [a for _, a in actions]
