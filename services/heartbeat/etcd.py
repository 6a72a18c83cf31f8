"""The little of etcd's v3 API the heartbeat service needs, over its JSON gateway.

Two calls: read a key, and compare-and-swap it in one transaction (and, for `exchange
up` replacing a host, the membership calls of etcd's runbook). The standard
library's HTTP client is enough for that (the gRPC client would pull in grpcio and a
code generator for two requests); every member is tried in turn, the local one first,
each with a short timeout, so a member that is down or cut off costs one timeout.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request


class EtcdUnavailable(RuntimeError):
    """No member answered: this host may be cut off from the majority."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Etcd:
    def __init__(self, endpoints: list[str], timeout_s: float = 0.5) -> None:
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s

    def _call(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        errors = []
        for endpoint in self.endpoints:
            request = urllib.request.Request(
                f"{endpoint}/v3/{path}", data, {"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    return json.loads(answer.read())
            except (OSError, urllib.error.URLError, ValueError) as exc:
                errors.append(f"{endpoint}: {exc}")
        raise EtcdUnavailable("; ".join(errors))

    def get(self, key: str) -> tuple[str | None, int]:
        """(value, mod revision) of ``key``; (None, 0) if it does not exist."""
        kvs = self._call("kv/range", {"key": _b64(key)}).get("kvs") or []
        if not kvs:
            return None, 0
        kv = kvs[0]
        return base64.b64decode(kv.get("value", "")).decode(), int(kv.get("mod_revision", 0))

    def swap(self, key: str, revision: int, value: str) -> bool:
        """Put ``value`` if ``key`` was last changed at ``revision`` (0: if it does not
        exist). Linearizable: of racing swaps from one revision, one succeeds."""
        compare = (
            {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}
            if revision
            else {"key": _b64(key), "target": "VERSION", "result": "EQUAL", "version": "0"}
        )
        answer = self._call(
            "kv/txn",
            {
                "compare": [compare],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
            },
        )
        return bool(answer.get("succeeded"))

    # -- membership: replacing a host whose etcd data was lost ---------------------

    def members(self) -> list[dict]:
        return self._call("cluster/member/list", {}).get("members") or []

    def remove_member(self, member_id: str) -> None:
        self._call("cluster/member/remove", {"ID": member_id})

    def add_member(self, peer_url: str) -> None:
        self._call("cluster/member/add", {"peerURLs": [peer_url]})
