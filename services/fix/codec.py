"""FIX 4.4 on the wire: framing a TCP byte stream into messages, and building messages.

simplefix parses fields and encodes messages (BodyLength and CheckSum included); it
does not check an inbound message's BodyLength or CheckSum, so ``Framer`` does that
before handing it the exact bytes: a message is ``8=FIX.4.4|9=N|`` then N bytes, then
``10=XXX|``, where XXX is the byte sum mod 256 of everything before it. A message that
fails either check is garbled and, as the FIX spec says, dropped unanswered (its
MsgSeqNum is never counted, so the next good message shows a gap and earns a
ResendRequest). Pure: no sockets.
"""

from __future__ import annotations

import re
import time

import simplefix
from simplefix import errors as fix_errors

BEGIN_STRING = b"FIX.4.4"
SOH = b"\x01"
_START = b"8=FIX"
_LENGTH = re.compile(rb"8=([^\x01]{1,16})\x019=(\d{1,9})\x01")


class TooLarge(Exception):
    """A BodyLength past the configured bound: the connection is ended."""


class Garbled(Exception):
    """A message whose BodyLength or CheckSum is wrong, or whose fields do not parse."""


def checksum(data: bytes) -> int:
    return sum(data) % 256


class Framer:
    """Bytes in, whole checked messages out. Bounded: it holds at most one message of
    ``max_bytes`` plus what one read brings."""

    def __init__(self, max_bytes: int) -> None:
        self.buf = bytearray()
        self.max_bytes = max_bytes
        self.garbled = 0  # messages dropped for a bad BodyLength, CheckSum or field

    def feed(self, data: bytes) -> list[simplefix.FixMessage]:
        """Every whole message ``data`` completes, parsed; garbled ones are counted and
        skipped. TooLarge if a message announces a body past ``max_bytes``."""
        self.buf += data
        out = []
        while True:
            try:
                message = self._next()
            except Garbled:
                self.garbled += 1
                continue
            if message is None:
                return out
            out.append(message)

    def _skip(self, start: int = 1) -> None:
        """Drop bytes up to the next thing that looks like the start of a message."""
        at = self.buf.find(_START, start)
        del self.buf[: at if at >= 0 else max(0, len(self.buf) - len(_START) + 1)]

    def _next(self) -> simplefix.FixMessage | None:
        buf = self.buf
        if not buf:
            return None
        if not buf.startswith(_START[: len(buf)]):
            self._skip(0)
            if not self.buf:
                return None
            raise Garbled("bytes before BeginString")
        head = _LENGTH.match(buf)
        if head is None:
            end = buf.find(SOH)
            if len(buf) > 48 or (end >= 0 and buf.find(SOH, end + 1) >= 0):
                self._skip()
                raise Garbled("no BeginString/BodyLength")
            return None  # the header is not all here yet
        body_len = int(head.group(2))
        if body_len > self.max_bytes:
            raise TooLarge(f"BodyLength {body_len} is over {self.max_bytes}")
        body_end = head.end() + body_len
        if len(buf) < body_end + 7:
            return None
        trailer = bytes(buf[body_end : body_end + 7])
        if not (trailer.startswith(b"10=") and trailer[6:7] == SOH and trailer[3:6].isdigit()):
            self._skip()  # BodyLength does not end where CheckSum starts
            raise Garbled("bad BodyLength")
        raw = bytes(buf[: body_end + 7])
        del buf[: body_end + 7]
        if int(trailer[3:6]) != checksum(raw[:body_end]):
            raise Garbled("bad CheckSum")
        parser = simplefix.FixParser()
        parser.append_buffer(raw)
        try:
            message = parser.get_message()
        except (fix_errors.FixParseError, ValueError) as exc:
            raise Garbled(str(exc)) from None
        if message is None:
            raise Garbled("unparsable")
        return message


def get(message: simplefix.FixMessage, tag: int) -> str | None:
    value = message.get(tag)
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def utc_timestamp(now: float | None = None) -> str:
    """FIX UTCTimestamp with milliseconds: YYYYMMDD-HH:MM:SS.sss."""
    now = time.time() if now is None else now
    millis = int(now * 1000) % 1000
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(now)) + f".{millis:03d}"


def build(
    msg_type: str,
    sender: str,
    target: str,
    seq: int,
    fields: list[tuple[int, object]],
    sending_time: str | None = None,
    poss_dup: str | None = None,
) -> bytes:
    """One whole message: the standard header, ``fields`` in order, the trailer.
    ``poss_dup``: the OrigSendingTime of a message sent again (PossDupFlag=Y)."""
    message = simplefix.FixMessage()
    message.append_pair(8, BEGIN_STRING, header=True)
    message.append_pair(35, msg_type, header=True)
    message.append_pair(49, sender, header=True)
    message.append_pair(56, target, header=True)
    message.append_pair(34, seq, header=True)
    if poss_dup is not None:
        message.append_pair(43, "Y", header=True)
    message.append_pair(52, sending_time or utc_timestamp(), header=True)
    if poss_dup is not None:
        message.append_pair(122, poss_dup, header=True)
    for tag, value in fields:
        if value is not None and value != "":
            message.append_pair(tag, value)
    return message.encode()


def fields_of(raw: bytes) -> tuple[str, list[tuple[int, bytes]], str]:
    """(MsgType, the body fields after the header, SendingTime) of a message we built:
    a message sent again keeps its body and gets a new header."""
    parser = simplefix.FixParser()
    parser.append_buffer(raw)
    message = parser.get_message()
    header = {8, 9, 35, 49, 56, 34, 43, 52, 122, 10}
    body = [(int(tag), value) for tag, value in message.pairs if int(tag) not in header]
    return get(message, 35) or "", body, get(message, 52) or ""
