"""The exchange's internal messages: what its services say to one another, never a client.

Commands as the matcher's engine takes them (the gateway makes them from clients'
requests, filling in the account from the session), the journal's records (a command
with the events it caused, which are public: ``services.common.wire``), the beats, and
the bus frames between services (batches, range reads, fencing, failover, status).
Encoded like the public messages: MessagePack arrays, the tag first (docs/protocol.md).
"""

from __future__ import annotations

import msgspec

from services.common.wire import (
    AdminActionCode,
    AnyEvent,
    OrdTypeCode,
    RejectCode,
    SessionCode,
    SideCode,
    StpCode,
    TifCode,
)

# ---------------------------------------------------------------------------
# Commands: what the matcher's engine takes in. The gateway fills in ``account``
# from the authenticated session; a client never chooses it.
# ---------------------------------------------------------------------------


class Command(msgspec.Struct, array_like=True, tag=True, frozen=True, gc=False):
    pass


class CreateAccount(Command, tag="create_account"):
    name: str
    password_hash: str  # salted slow hash made by the gateway; never the password
    stp: StpCode = 2


class NewOrder(Command, tag="new_order"):
    account: int
    cl_ord_id: str
    symbol: str
    side: SideCode
    qty: int
    price: int = 0  # ignored for market orders
    ord_type: OrdTypeCode = 1
    tif: TifCode = 1
    post_only: bool = False
    stp: StpCode = 0
    expire_date: int = 0  # GTD only (YYYYMMDD)


class CancelOrder(Command, tag="cancel"):
    account: int
    cl_ord_id: str
    order_id: int


class ReplaceOrder(Command, tag="replace"):
    """New price and open size for a resting order; the side never changes."""

    account: int
    cl_ord_id: str
    order_id: int
    price: int
    qty: int


class SetPassword(Command, tag="set_password"):
    """A password change the gateway checked (old password, policy) and hashed."""

    account: int
    cl_ord_id: str
    password_hash: str


class Admin(Command, tag="admin"):
    """An operator's action, sequenced and journaled like any order. ``account`` is
    the operator's (the gateway checked the role); ``target`` an account id for kill
    and unkill; ``price`` the new reference price for ``reference``."""

    account: int
    cl_ord_id: str
    action: AdminActionCode
    symbol: str = ""
    target: int = 0
    price: int = 0
    amount: int = 0  # ``deposit``: cash in price units moved into (or, < 0, out of) target
    state: int = 0  # ``session``: the Session code to move ``symbol`` to
    date: int = 0  # ``end_of_day``: the next trading date (the gateway reads the calendar)


class Reopen(Command, tag="reopen"):
    """Primary matcher -> its own engine: a symbol's volatility pause is over. The
    engine has no clock, so the matcher sequences this (journaled like any command)
    once the pause has lasted ``[risk] pause_ms``."""

    symbol: str


class Lead(Command, tag="lead"):
    """A new primary's first record, which changes no state: the records it adopted
    from earlier epochs count as committed only once a majority of journals holds a
    record of its own epoch after them (Raft's rule for entries of earlier terms)."""

    epoch: int
    instance: str


class SetSession(Command, tag="session"):
    """Primary matcher's scheduler -> engine: move ``symbol`` to ``state`` (the engine has
    no clock; the schedule in config decides when). Moving into the state a symbol is
    already in changes nothing, so a new primary may send it again."""

    symbol: str
    state: SessionCode


class EndOfDay(Command, tag="end_of_day"):
    """Primary matcher's scheduler -> engine: end ``trading_date`` and start
    ``next_date`` (both YYYYMMDD, from the calendar). Ignored (no events) unless
    ``trading_date`` is the engine's current date, so a resend is harmless; an engine
    whose date is still 0 takes it as the first day's start."""

    trading_date: int
    next_date: int


AnyCommand = (
    CreateAccount
    | NewOrder
    | CancelOrder
    | ReplaceOrder
    | SetPassword
    | Admin
    | Reopen
    | Lead
    | SetSession
    | EndOfDay
)


# ---------------------------------------------------------------------------
# The internal bus: journal records, the frames between services.
# ---------------------------------------------------------------------------


class Record(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One sequenced command and everything it caused: the unit of the journal."""

    seq: int
    epoch: int
    command: AnyCommand
    events: list[AnyEvent]


class RecordHead(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The first two fields of an encoded Record, decoded without the rest."""

    seq: int
    epoch: int


class Beat(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """How far the publisher has got, so a subscriber sees it is behind even without
    traffic; the primary matcher learns its journal lag from the journal's beats."""

    seq: int  # last sequence number published (matcher) or committed (journal)
    epoch: int  # the matcher's epoch, or the newest epoch the journal is fenced at
    disk_full: bool = False  # journal: it cannot write; the matcher refuses new commands
    # journal: its name, the epoch whose primary's log it matches (0: not yet
    # reconciled since it started), and the last record it holds on disk, committed
    # or not; the primary counts ``durable`` of journals reconciled at its epoch
    journal: str = ""
    reconciled: int = 0
    durable: int = 0
    # matcher: the commit position (a majority of journals hold every record up to
    # it); each journal publishes its records as committed only up to here
    commit: int = 0
    # journal: it started with an empty log and has not yet caught up with its peers
    # (services/journal/joining.py); its fence answers do not count toward a majority
    joining: bool = False


class Bus(msgspec.Struct, array_like=True, tag=True, frozen=True, gc=False):
    pass


class CommandBatch(Bus, tag="commands"):
    """Gateway -> matcher: commands in the order the gateway received them."""

    commands: list[AnyCommand]


class ReadRange(Bus, tag="read"):
    """Ask for records ``first`` .. ``first + count - 1`` (journal or matcher retransmit).
    A journal serves committed records only, unless ``durable``: a new primary reads
    the most complete log's uncommitted tail that way, to adopt it."""

    first: int
    count: int
    durable: bool = False


class Archived(Bus, tag="archived"):
    """Journal -> a reader whose ReadRange starts before ``first_seq``: those records
    were archived once every reader had a snapshot past them; boot from a snapshot."""

    first_seq: int


class MatcherBusy(Bus, tag="busy"):
    """Matcher -> gateway: these commands were not sequenced; tell their senders."""

    commands: list[AnyCommand]
    code: RejectCode


class Fence(Bus, tag="fence"):
    """New primary -> journal: refuse records of any epoch below ``epoch`` from now on.
    The journal answers with a FenceAck (its log's end and epoch history), from which
    the new primary takes the most complete log of a majority before it sequences
    anything (so no committed record is lost and no old-epoch record slips in)."""

    epoch: int
    instance: str  # the matcher instance to follow from now on ("a" or "b")


class FenceAck(Bus, tag="fence_ack"):
    """Journal -> primary: fenced at ``epoch``; holds records up to ``last_seq`` on disk,
    and ``epochs`` lists (epoch, first seq) of every epoch in its log, oldest first."""

    journal: str
    epoch: int
    last_seq: int
    epochs: list[tuple[int, int]]
    reconciled: int = 0
    joining: bool = False  # refilling after starting empty: not counted in the majority


class Reconcile(Bus, tag="reconcile"):
    """Primary -> journal: the log every journal must match, as (epoch, first seq) of
    each of its epochs (the primary's own last). The journal cuts whatever of its log
    differs (records of a deposed epoch that never reached a majority), then follows
    ``instance`` from its new end."""

    epoch: int
    instance: str
    epochs: list[tuple[int, int]]


class ServiceBeat(Bus, tag="service_beat"):
    """Every service -> heartbeat service, every heartbeat_ms: who it is and where it is."""

    service: str
    role: str
    pid: int
    epoch: int = 0
    seq: int = 0  # last sequence number the service has applied / published
    committed: int = 0  # last committed sequence number it knows of
    host: str = ""  # the cluster host it runs on ("" on a one-host exchange)


class StatusRequest(Bus, tag="status_req"):
    pass


class ServiceState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    service: str
    role: str
    pid: int
    epoch: int
    seq: int
    committed: int
    age_ms: int  # since its last beat
    alive: bool
    host: str = ""


class Status(Bus, tag="status"):
    epoch: int
    services: list[ServiceState]


class Promote(Bus, tag="promote"):
    """Heartbeat service -> a standby matcher: become primary with this epoch."""

    epoch: int


class Demote(Bus, tag="demote"):
    """Heartbeat service -> a matcher that acts as primary but whose epoch is over."""

    epoch: int


class StateQuery(Bus, tag="state_query"):
    """Operator/test -> matcher: the state hash at the current sequence number."""


class StateInfo(Bus, tag="state_info"):
    role: str
    epoch: int
    seq: int
    state_hash: str


AnyBus = (
    StateQuery
    | StateInfo
    | CommandBatch
    | ReadRange
    | Archived
    | MatcherBusy
    | Fence
    | FenceAck
    | Reconcile
    | ServiceBeat
    | StatusRequest
    | Status
    | Promote
    | Demote
)

# Topics (first frame) on the matcher's and the journal's PUB sockets.
TOPIC_RECORDS = b"R"  # second frame: a MessagePack array of Records, in seq order
TOPIC_BEAT = b"H"  # second frame: a Beat
# a journal that is one of several: a Beat after every sync, for the primary's commit
# position only (its followers subscribe to R and H, so they are not woken by it)
TOPIC_DURABLE = b"D"
