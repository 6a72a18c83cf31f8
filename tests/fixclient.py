"""An independent FIX engine as the FIX service's client: QuickFIX (C++, its Python
binding from PyPI), with its own session layer, file store and sequence numbers, so
the tests check our acceptor against an engine written elsewhere, not against itself.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import quickfix as fix

SOH = "\x01"


def fields(text: str) -> dict[str, str]:
    """A FIX message's text as tag -> value (the last one wins for repeated tags)."""
    return dict(part.split("=", 1) for part in text.split(SOH) if "=" in part)


class App(fix.Application):
    """Collects what arrives; puts Username/Password on the Logon."""

    def __init__(self, username: str, password: str, drop_copy: bool = False) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.drop_copy = drop_copy
        self.app: queue.Queue[dict] = queue.Queue()  # application messages received
        self.admin: list[dict] = []  # session messages received, in order
        self.logons = 0
        self.logged_on = threading.Event()
        self.session_id = None

    def onCreate(self, sessionID):  # noqa: N802 - QuickFIX's names
        self.session_id = sessionID

    def onLogon(self, sessionID):  # noqa: N802
        self.logons += 1
        self.logged_on.set()

    def onLogout(self, sessionID):  # noqa: N802
        self.logged_on.clear()

    def toAdmin(self, message, sessionID):  # noqa: N802
        if message.getHeader().getField(35) == "A":
            message.setField(553, self.username)
            message.setField(554, self.password)
            if self.drop_copy:  # TargetSubID on the Logon asks for a drop-copy session
                message.getHeader().setField(57, "DROPCOPY")

    def fromAdmin(self, message, sessionID):  # noqa: N802
        self.admin.append(fields(message.toString()))

    def toApp(self, message, sessionID):  # noqa: N802
        pass

    def fromApp(self, message, sessionID):  # noqa: N802
        self.app.put(fields(message.toString()))


SETTINGS = """[DEFAULT]
ConnectionType=initiator
ReconnectInterval=1
FileStorePath={store}
FileLogPath={logs}
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=N
HeartBtInt={heartbeat}
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
ResetOnLogon={reset}
PersistMessages=Y

[SESSION]
BeginString=FIX.4.4
SenderCompID={sender}
TargetCompID=EXCHANGE
"""


class FixClient:
    """One QuickFIX initiator session; its store lives in ``directory`` and survives a
    ``stop``/``start`` (a restarted client keeps its sequence numbers)."""

    def __init__(
        self,
        directory: Path,
        port: int,
        sender: str,
        username: str,
        password: str = "Secret.pw1",
        drop_copy: bool = False,
        heartbeat: int = 30,
        reset: bool = False,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{sender}.cfg"
        path.write_text(
            SETTINGS.format(
                store=directory / "store",
                logs=directory / "log",
                heartbeat=heartbeat,
                port=port,
                sender=sender,
                reset="Y" if reset else "N",
            )
        )
        self.settings_path = str(path)
        self.app = App(username, password, drop_copy)
        self.initiator = None
        self.ids = 0

    def start(self, wait: float = 20.0) -> FixClient:
        settings = fix.SessionSettings(self.settings_path)
        store = fix.FileStoreFactory(settings)
        logs = fix.FileLogFactory(settings)
        self.initiator = fix.SocketInitiator(self.app, store, settings, logs)
        self.initiator.start()
        if wait:
            self.wait_logged_on(wait)
        return self

    def wait_logged_on(self, timeout: float = 20.0) -> None:
        assert self.app.logged_on.wait(timeout), "QuickFIX did not log on"

    def stop(self) -> None:
        if self.initiator is not None:
            self.initiator.stop()
            self.initiator = None

    def session(self):
        return fix.Session.lookupSession(self.app.session_id)

    def next_seq_out(self) -> int:
        return self.session().getExpectedSenderNum()

    def send(self, msg_type: str, body: list[tuple[int, object]]) -> None:
        message = fix.Message()
        message.getHeader().setField(fix.BeginString("FIX.4.4"))
        message.getHeader().setField(fix.MsgType(msg_type))
        for tag, value in body:
            message.setField(tag, str(value))
        assert fix.Session.sendToTarget(message, self.app.session_id)

    def new_order(
        self, cl_ord_id: str, side: str, qty: int, price: str | None, symbol: str = "AAPL", **extra
    ) -> None:
        body = [(11, cl_ord_id), (55, symbol), (54, side), (38, qty)]
        body += [(40, "2" if price else "1"), (60, _now())]
        if price:
            body.append((44, price))
        body += [(int(k[1:]), v) for k, v in extra.items()]  # t59="3": TimeInForce IOC
        self.send("D", body)

    def cancel(self, cl_ord_id: str, orig: str, side: str, symbol: str = "AAPL") -> None:
        self.send("F", [(11, cl_ord_id), (41, orig), (55, symbol), (54, side), (60, _now())])

    def replace(self, cl_ord_id: str, orig: str, side: str, qty: int, price: str) -> None:
        body = [(11, cl_ord_id), (41, orig), (55, "AAPL"), (54, side), (38, qty), (40, "2")]
        self.send("G", body + [(44, price), (60, _now())])

    def next(self, timeout: float = 10.0, **match: str) -> dict:
        """The next application message whose tags match ``match`` (t150="F" ...);
        others on the way are dropped."""
        deadline = time.monotonic() + timeout
        want = {k[1:]: str(v) for k, v in match.items()}
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no message matching {want}"
            try:
                msg = self.app.app.get(timeout=remaining)
            except queue.Empty:
                continue
            if all(msg.get(k) == v for k, v in want.items()):
                return msg

    def drain(self, quiet: float = 0.5) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self.app.app.get(timeout=quiet))
            except queue.Empty:
                return out


def _now() -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()) + ".000"
