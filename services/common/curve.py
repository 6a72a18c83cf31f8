"""ZeroMQ CURVE for the exchange's TCP endpoints: keys, the server side, the client side.

Keys live in ``[security] curve_dir`` (default ``$EXCHANGE_HOME/keys``), in the layout
of ``zmq.auth.create_certificates``:

    server.key / server.key_secret         the gateway's key pair
    clients/<name>.key / .key_secret       each client's key pair (give it to them)
    authorized_clients/<name>.key          the public keys the gateway lets in

A ZAP handler (pyzmq's ThreadAuthenticator) accepts a client only if its public key
is in ``authorized_clients/``: an unknown key fails the handshake, so not one of its
frames reaches the gateway's code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from services.common.config import Config


def enabled(cfg: Config) -> bool:
    return bool(cfg.security.get("curve", False))


def key_dir(cfg: Config) -> Path:
    raw = str(cfg.security.get("curve_dir", "{home}/keys"))
    return Path(raw.replace("{home}", str(cfg.home)))


def make_server_keys(keys: Path) -> Path:
    """The gateway's key pair (kept if it exists); returns the public key file."""
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "authorized_clients").mkdir(exist_ok=True)
    public = keys / "server.key"
    if not public.exists():
        zmq.auth.create_certificates(keys, "server")
        (keys / "server.key_secret").chmod(0o600)
    return public


def make_client_keys(keys: Path, name: str) -> Path:
    """A client's key pair, authorized at once; returns its secret key file."""
    clients = keys / "clients"
    clients.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(clients, name)
    Path(secret).chmod(0o600)
    (keys / "authorized_clients").mkdir(parents=True, exist_ok=True)
    shutil.copy(public, keys / "authorized_clients" / f"{name}.key")
    return Path(secret)


def serve(ctx: zmq.Context, sock: zmq.Socket, cfg: Config) -> ThreadAuthenticator:
    """Make ``sock`` (not yet bound) a CURVE server admitting only authorized keys;
    the returned authenticator must be stopped when the socket closes."""
    keys = key_dir(cfg)
    public, secret = zmq.auth.load_certificate(keys / "server.key_secret")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    reload(auth, cfg)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


def reload(auth: ThreadAuthenticator, cfg: Config) -> None:
    """Read ``authorized_clients/`` again, so a key added (or removed) takes effect
    without a restart."""
    auth.configure_curve(domain="*", location=str(key_dir(cfg) / "authorized_clients"))


def client_keys(secret_file: Path, server_public_file: Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for ``connect``."""
    public, secret = zmq.auth.load_certificate(secret_file)
    server_public, _ = zmq.auth.load_certificate(server_public_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    return public, secret, server_public


def connect(sock: zmq.Socket, keys: tuple[bytes, bytes, bytes]) -> None:
    """Make ``sock`` (not yet connected) a CURVE client with these keys."""
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
