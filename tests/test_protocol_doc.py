"""docs/protocol.md must name every message, field, enum value and reject code."""

from __future__ import annotations

import enum
from pathlib import Path

import msgspec

from services.common import protocol

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()


def structs():
    for obj in vars(protocol).values():
        if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj.__struct_fields__:
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
    for obj in vars(protocol).values():
        if isinstance(obj, type) and issubclass(obj, enum.IntEnum) and obj is not enum.IntEnum:
            for member in obj:
                if f"{member.name}={int(member)}" not in DOC and (
                    f"| {int(member)} | {member.name} |" not in DOC
                ):
                    missing.append(f"{obj.__name__}.{member.name}")
    assert not missing
