"""ZeroMQ CURVE for the exchange's TCP endpoints: keys and the server side.

Keys live in ``[security] curve_dir`` (default ``$EXCHANGE_HOME/keys``), in the layout
of ``zmq.auth.create_certificates``:

    server.key / server.key_secret         the gateway's key pair
    clients/<name>.key / .key_secret       each client's key pair (give it to them)
    authorized_clients/<name>.key          the public keys the gateway lets in

A ZAP handler (pyzmq's ThreadAuthenticator) accepts a client only if its public key
is in ``authorized_clients/``: an unknown key fails the handshake, so not one of its
frames reaches the gateway's code.

The links between the exchange's own services use the same machinery when an endpoint
is ``tcp://`` (services on several hosts): ``bind`` and ``link`` make such a socket a
CURVE server or client with the mesh's key pair (``mesh.key`` / ``mesh.key_secret``,
made with the server's), and the ZAP domain ``mesh`` admits only the public keys in
``authorized_services/``. ``ipc://`` links stay as they are: they never leave the
host and their socket files sit in ``$EXCHANGE_HOME/run/``. The public market-data
endpoints stay plain too (anyone may read the feeds).

The client side (loading a client's keys, making a socket a CURVE client) is the SDK's:
``clients.settings.client_keys`` and ``clients.core.curve_client``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from services.common.config import Config, is_cluster


def enabled(cfg: Config) -> bool:
    return cfg.security.curve


def key_dir(cfg: Config) -> Path:
    return Path(cfg.security.curve_dir)  # "{home}" was filled in at load


def make_server_keys(keys: Path) -> Path:
    """The gateway's key pair (kept if it exists); returns the public key file."""
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "authorized_clients").mkdir(exist_ok=True)
    public = keys / "server.key"
    if not public.exists():
        zmq.auth.create_certificates(keys, "server")
        (keys / "server.key_secret").chmod(0o600)
    if not (keys / "mesh.key").exists():  # the services' own pair, for tcp links
        mesh_public, mesh_secret = zmq.auth.create_certificates(keys, "mesh")
        Path(mesh_secret).chmod(0o600)
        (keys / "authorized_services").mkdir(exist_ok=True)
        shutil.copy(mesh_public, keys / "authorized_services" / "mesh.key")
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
    auth = authenticator(ctx)
    reload(auth, cfg)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


def reload(auth: ThreadAuthenticator, cfg: Config) -> None:
    """Read ``authorized_clients/`` again, so a key added (or removed) takes effect
    without a restart."""
    auth.configure_curve(domain="*", location=str(key_dir(cfg) / "authorized_clients"))


# -- the exchange's own links ------------------------------------------------------

MESH_DOMAIN = "mesh"
_authenticators: dict[int, ThreadAuthenticator] = {}  # one ZAP handler per context
_mesh: dict[str, object] = {"on": False, "dir": None, "keys": None}


def authenticator(ctx: zmq.Context) -> ThreadAuthenticator:
    """The context's ZAP handler, started on first use (a context can have only one;
    the gateway's clients and the mesh's services are two domains of it)."""
    auth = _authenticators.get(id(ctx))
    if auth is None:
        auth = _authenticators[id(ctx)] = ThreadAuthenticator(ctx)
        auth.start()
    return auth


def use_for_services(cfg: Config) -> None:
    """Every service calls this once at start (``services/common/main.py``): from then
    on ``bind`` and ``link`` put CURVE on each tcp:// endpoint if the config turns it on.
    The mesh's keys are read when the first such endpoint needs them."""
    # between the hosts of a cluster always: journals, commands and beats cross a network
    _mesh.update(on=enabled(cfg) or is_cluster(cfg), dir=key_dir(cfg), keys=None)


def _mesh_keys() -> tuple[bytes, bytes]:
    if _mesh["keys"] is None:
        path = Path(str(_mesh["dir"])) / "mesh.key_secret"
        if not path.exists():
            raise RuntimeError(
                f"CURVE is on and a service link is tcp://, but {path} is missing: "
                "run `exchange keys server`"
            )
        _mesh["keys"] = zmq.auth.load_certificate(path)
    return _mesh["keys"]  # type: ignore[return-value]


def _secured(endpoint: str) -> bool:
    return bool(_mesh["on"]) and endpoint.startswith("tcp://")


def _across_hosts(sock: zmq.Socket, endpoint: str) -> None:
    """A link that may cross a network: ZMTP heartbeats notice a dead or cut-off
    connection within a second and remake it, instead of waiting out TCP's
    retransmission back-off (seconds) after a partition heals. The same for making
    it: a connect whose SYN went into a partition is given up after half a second
    and tried again, instead of waiting out SYN back-off (1, 3, 7 s ...) after the
    heal, which kept a healed host from hearing the others for seconds."""
    if endpoint.startswith("tcp://"):
        sock.setsockopt(zmq.HEARTBEAT_IVL, 250)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 1_000)
        sock.setsockopt(zmq.CONNECT_TIMEOUT, 500)


def bind(sock: zmq.Socket, endpoint: str) -> None:
    """Bind a socket other services connect to; over tcp with CURVE on, only peers
    holding an authorized service key complete the handshake."""
    if _secured(endpoint):
        public, secret = _mesh_keys()
        location = Path(str(_mesh["dir"])) / "authorized_services"
        authenticator(sock.context).configure_curve(domain=MESH_DOMAIN, location=str(location))
        sock.zap_domain = MESH_DOMAIN.encode()
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_server = True
    _across_hosts(sock, endpoint)
    sock.bind(endpoint)


def link(sock: zmq.Socket, endpoint: str) -> None:
    """Connect a socket to another service's endpoint (CURVE over tcp when on)."""
    if _secured(endpoint):
        public, secret = _mesh_keys()
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, public
    _across_hosts(sock, endpoint)
    sock.connect(endpoint)
