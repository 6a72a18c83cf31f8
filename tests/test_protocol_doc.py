"""docs/protocol.md must name every message, field, enum value and reject code: the
public protocol (``services.common.wire``) and the internal bus (``services.common.bus``)."""

from __future__ import annotations

import enum
from pathlib import Path

import msgspec

from services.common import bus, wire

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()


MODULES = (wire, bus)


def defined():
    """Every class the modules define (bus imports some of wire's: each counted once)."""
    for module in MODULES:
        for obj in vars(module).values():
            if isinstance(obj, type) and obj.__module__ == module.__name__:
                yield obj


def structs():
    for obj in defined():
        if issubclass(obj, msgspec.Struct) and obj.__struct_fields__:
            yield obj


def test_every_message_and_field_is_documented():
    missing = []
    for cls in structs():
        tag = cls.__struct_config__.tag
        if tag and f"`{tag}`" not in DOC:
            missing.append(f"message {tag}")
        missing += [f"{cls.__name__}.{f}" for f in cls.__struct_fields__ if f"`{f}`" not in DOC]
    assert not missing


def test_every_enum_value_and_reject_code_is_documented():
    missing = []
    for obj in defined():
        if issubclass(obj, enum.IntEnum):
            for member in obj:
                if f"{member.name}={int(member)}" not in DOC and (
                    f"| {int(member)} | {member.name} |" not in DOC
                ):
                    missing.append(f"{obj.__name__}.{member.name}")
    assert not missing


def test_the_public_module_holds_every_message_a_client_sees():
    """A client's requests, replies, the events in reports and the feed are public; the
    internal module holds only what services say to one another."""
    messages = [cls for cls in defined() if issubclass(cls, msgspec.Struct)]
    public = {cls.__name__ for cls in messages if cls.__module__ == wire.__name__}
    for union in (wire.AnyRequest, wire.AnyReply, wire.AnyEvent, wire.AnyFeed):
        assert {cls.__name__ for cls in union.__args__} <= public
    internal = {cls.__name__ for cls in messages if cls.__module__ == bus.__name__}
    assert not public & internal
    assert {"NewOrder", "Record", "CommandBatch", "Fence"} <= internal
