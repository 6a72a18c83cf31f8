"""`exchange keys server | client NAME`: CURVE key pairs for encrypted, authenticated
client connections (``[security] curve = true``; see docs/security.md).

The gateway loads ``server.key_secret`` when it starts; ``client NAME`` makes a pair
for one client and authorizes its public key (a running gateway reads the authorized
keys every few seconds). Secret key files are written readable by their owner only.
"""

from __future__ import annotations

import json
import re
import sys

KEY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def run(kind: str, name: str, as_json: bool) -> int:
    from services.common import config, curve  # the server's side: only when run

    if kind == "client" and not KEY_NAME.fullmatch(name):
        print("a key name is 1-64 letters, digits, '-' or '_'", file=sys.stderr)
        return 2
    cfg = config.load(home=config.exchange_home())
    keys = curve.key_dir(cfg)
    server = curve.make_server_keys(keys)
    out = {"ok": True, "dir": str(keys), "server_public": str(server)}
    if kind == "client":
        out["client_secret"] = str(curve.make_client_keys(keys, name))
    if as_json:
        print(json.dumps(out))
    elif kind == "client":
        print(
            f"client key pair for {name}: {out['client_secret']} (authorized)\n"
            f"  use it: EXCHANGE_CURVE_KEY={out['client_secret']} exchange ..."
        )
    else:
        print(f"server key pair in {keys} (public key {server})")
    return 0


def register(sub) -> None:
    keys = sub.add_parser("keys", help="CURVE key pairs for encrypted client connections")
    kinds = keys.add_subparsers(dest="kind", required=True)
    server = kinds.add_parser(
        "server", help="the gateway's key pair and the services' own (each kept if it exists)"
    )
    server.add_argument("--json", action="store_true", help="JSON on stdout")
    server.set_defaults(func=lambda a: run("server", "", a.json))
    client = kinds.add_parser("client", help="a client's key pair, authorized at once")
    client.add_argument("name", help="a name for the key (letters, digits, - and _)")
    client.add_argument("--json", action="store_true", help="JSON on stdout")
    client.set_defaults(func=lambda a: run("client", a.name, a.json))
