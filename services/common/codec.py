"""MessagePack encoding of bus frames, shared so every service encodes the same way.

The public messages' encoder and decoders are ``services.common.wire``'s (the client
SDK uses them without this module); the ones here decode the internal bus.

Record batches travel as one MessagePack array per frame. The journal splits a batch
into raw record bytes without decoding the commands and events inside, and joins raw
records back into a batch for readers, so a record is encoded once, by the matcher.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import msgspec

from services.common.bus import AnyBus, Beat, Record, RecordHead
from services.common.wire import (  # the public codec, shared with clients
    DecodeError,
    encode,
    encoder,
    feed_decoder,
    reply_decoder,
    request_decoder,
)

records_decoder = msgspec.msgpack.Decoder(list[Record])
raw_batch_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
head_decoder = msgspec.msgpack.Decoder(RecordHead)
record_decoder = msgspec.msgpack.Decoder(Record)
beat_decoder = msgspec.msgpack.Decoder(Beat)
bus_decoder = msgspec.msgpack.Decoder(AnyBus)

__all__ = [
    "DecodeError",
    "RawRecord",
    "beat_decoder",
    "bus_decoder",
    "encode",
    "encoder",
    "feed_decoder",
    "head_decoder",
    "join_batch",
    "raw_batch_decoder",
    "raw_records",
    "record_decoder",
    "records_decoder",
    "reply_decoder",
    "request_decoder",
]


def join_batch(raws: list[bytes]) -> bytes:
    """A MessagePack array made of already-encoded records."""
    n = len(raws)
    if n < 16:
        header = bytes((0x90 | n,))
    elif n < 1 << 16:
        header = b"\xdc" + struct.pack(">H", n)
    else:
        header = b"\xdd" + struct.pack(">I", n)
    return header + b"".join(raws)


class RawRecord(NamedTuple):
    """A record still encoded, with the two fields the journal acts on decoded."""

    seq: int
    epoch: int
    raw: msgspec.Raw


def raw_records(batch: bytes) -> list[RawRecord]:
    """The records of a batch with only their heads decoded: the journal stores and
    republishes the matcher's bytes, so it never pays to decode commands and events."""
    decode_head = head_decoder.decode
    out = []
    for raw in raw_batch_decoder.decode(batch):
        head = decode_head(raw)
        out.append(RawRecord(head.seq, head.epoch, raw))
    return out
