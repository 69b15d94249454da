"""`frender account` for users and `frender operator` for the master's operator.

An account is a key. The operator funds a key, not a name: a stranger may bind
``alice`` before alice does, so a grant names the account's key fingerprint as
well (alice gives it with her name, as she would an address: `frender account
show` or `account create` prints it), and the master refuses a grant whose key
is not the one bound to that name. What the master sends back is shown through
``frender.apps.terminal.safe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from frender.apps.terminal import DEFAULT_HOME, call_or_fail, fail, safe

if TYPE_CHECKING:  # the commands import what they use when they run: the CLI starts fast
    from frender.apps import messages as msg
    from frender.transports import Address

__all__ = ["account_app", "operator_app"]

operator_app = typer.Typer(no_args_is_help=True, help="Operator commands, signed with the master's key (its --home).")
account_app = typer.Typer(no_args_is_help=True, help="Your account: a username bound to your key.")


def _address(text: str) -> Address:
    from frender.transports import Address

    try:
        return Address.parse(text)
    except ValueError as exc:
        fail(f"bad address {text!r}: {exc}")


def _give(user: str, key: str) -> str:
    return f"to be granted points, give the operator your name and key: {safe(user)} {key}"


@account_app.command("create")
def account_create(
    user: str = typer.Argument(..., help="The username to bind to your key: 1-32 ASCII letters, digits, '-', '_' or '.'."),
    master: str = typer.Option(..., help="The master's address."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key; run your friends with this key too (--home)."),
) -> None:
    """Bind a username to your key. Only then can the operator grant it points and your friends register under it."""

    from frender.apps.client import create_account

    created = call_or_fail("the master", create_account, _address(master), home, user)
    typer.echo(f"account {safe(created.user)} bound to key {safe(created.key)}; balance {created.balance}")
    typer.echo(_give(created.user, safe(created.key)))


@account_app.command("show")
def account_show(
    master: Optional[str] = typer.Option(None, help="The master's address: also show the account this key holds there, and its balance."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key."),
) -> None:
    """Print your key's fingerprint (what the operator needs to grant you points) and, with --master, your account."""

    from frender.apps import messages as msg
    from frender.transports import Identity, connect
    from frender.transports.identity import KEY_FILE

    if not (home / KEY_FILE).is_file():
        fail(f"{home} holds no key yet: `frender account create NAME --master ... --home {home}` makes one and binds NAME to it")
    identity = Identity.load_or_create(home)
    if master is None:
        typer.echo(f"key {identity.fingerprint}")
        return

    async def ask() -> msg.AccountInfo:
        async with connect(address, identity) as session:
            return await msg.ask(session, msg.AccountOf(key=identity.fingerprint))

    address = _address(master)
    info = call_or_fail("the master", ask)
    if not info.user:
        typer.echo(f"key {identity.fingerprint} holds no account at this master: `frender account create NAME` binds one")
        return
    typer.echo(f"account {safe(info.user)}, key {identity.fingerprint}, balance {info.balance}")
    typer.echo(_give(info.user, identity.fingerprint))


@operator_app.command("grant")
def operator_grant(
    user: str = typer.Argument(..., help="The account's name."),
    amount: int = typer.Argument(..., help="Points to grant."),
    key: Optional[str] = typer.Option(None, help="The account's key fingerprint, sha256:..., as its owner gave it (`frender account show`)."),
    master: str = typer.Option(..., help="The master's address."),
    home: Path = typer.Option(DEFAULT_HOME / "master", help="The master's home (its key)."),
    reason: str = typer.Option("operator grant"),
) -> None:
    """Grant points to the account USER bound to the key --key: the master refuses if another key bound that name."""
    from frender.apps import messages as msg

    if not key:
        fail(
            f"a grant names the account's key as well as its name: --key sha256:... as {safe(user)}'s owner gave it "
            "(`frender account show` prints it); a name alone may have been bound by someone else first"
        )
    key = key.strip()
    reply = _operator(master, home, msg.Grant(user=user, amount=amount, reason=reason, key=key))
    from frender.apps.cli_artist import points

    typer.echo(f"granted {points(amount)} to {safe(user)} (key {safe(key)}): balance now {reply.balances.get(user, 0)}")


@operator_app.command("trust")
def operator_trust(
    key: str = typer.Argument(..., help="The requester's key fingerprint, sha256:..."),
    name: str = typer.Option("requester", help="A name for the log: 1-32 ASCII letters, digits, '-', '_' or '.'."),
    master: str = typer.Option(..., help="The master's address."),
    home: Path = typer.Option(DEFAULT_HOME / "master", help="The master's home (its key)."),
) -> None:
    """Trust a requester's key to ask for friends."""
    from frender.apps import messages as msg

    _operator(master, home, msg.Trust(key=key, name=name))
    typer.echo(f"trusted requester {safe(name)} ({safe(key)}): it may now ask for friends")


@operator_app.command("web-token")
def operator_web_token(
    home: Path = typer.Option(DEFAULT_HOME / "master", help="The master's home (its key)."),
    hours: float = typer.Option(12.0, help="How long the token is valid."),
    url: Optional[str] = typer.Option(None, help="The dashboard's address (what `run master --web` printed), to print a whole link."),
) -> None:
    """Print a token that opens the operator's dashboard (the master's, and every job's on trusted requesters)."""
    import time

    from frender.apps.web import OPERATOR, sign_token
    from frender.transports import Identity

    if not 0 < hours <= 24 * 366:
        fail("--hours is above 0 and at most a year")
    if not (home / "identity.pem").is_file():
        fail(f"{home} holds no key: give the master's --home")
    token = sign_token(Identity.load_or_create(home), OPERATOR, now=time.time(), seconds=hours * 3600)
    typer.echo(f"{url.rstrip('/')}/?t={token}" if url else token)


def _operator(master: str, home: Path, request: msg.Asks[msg.Ok]) -> msg.StatusReply:
    """Send an operator's ``request``; the master's status after it (for the balance a grant left)."""

    from frender.apps.client import operator_call
    from frender.apps.client import status as get_status

    address = _address(master)
    call_or_fail("the master", operator_call, address, home, request)
    return call_or_fail("the master", get_status, address, home)
