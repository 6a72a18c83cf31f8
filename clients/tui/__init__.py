"""`exchange tui`: a full-screen live terminal for a trader (textual).

``model`` is the pure view-model (tested without a screen), ``widgets`` the panels and
``app`` the application and its socket polling. Importing this package does not
import textual: only running the command does.
"""

from __future__ import annotations


def _run(args) -> int:
    from clients.tui.app import main

    return main(args)


def register(sub) -> None:
    """Add `exchange tui` to the CLI's subcommands."""
    p = sub.add_parser(
        "tui",
        help="full-screen live terminal: order entry, book, orders, positions, tape, log",
        description="A live terminal UI (80x24 and up). Credentials from EXCHANGE_USER / "
        "EXCHANGE_PASSWORD or a prompt before the screen starts.",
    )
    p.add_argument("--symbol", default="AAPL", help="the symbol shown first")
    p.add_argument("--create-account", action="store_true", help="sign up first if missing")
    p.set_defaults(func=_run)
