"""MessagePack encoding of bus frames, shared so every service encodes the same way.

Record batches travel as one MessagePack array per frame. The journal splits a batch
into raw record bytes without decoding the commands and events inside, and joins raw
records back into a batch for readers, so a record is encoded once, by the matcher.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import msgspec

from services.common.protocol import (
    AnyBus,
    AnyFeed,
    AnyReply,
    AnyRequest,
    Beat,
    Record,
    RecordHead,
)

encoder = msgspec.msgpack.Encoder()
encode = encoder.encode

records_decoder = msgspec.msgpack.Decoder(list[Record])
raw_batch_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
head_decoder = msgspec.msgpack.Decoder(RecordHead)
record_decoder = msgspec.msgpack.Decoder(Record)
beat_decoder = msgspec.msgpack.Decoder(Beat)
bus_decoder = msgspec.msgpack.Decoder(AnyBus)
request_decoder = msgspec.msgpack.Decoder(AnyRequest)
reply_decoder = msgspec.msgpack.Decoder(AnyReply)
feed_decoder = msgspec.msgpack.Decoder(AnyFeed)

# msgspec raises UnicodeDecodeError (not its own error) for a str that is not UTF-8:
# the fuzz test found that one, which would have stopped the gateway.
DecodeError = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


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
