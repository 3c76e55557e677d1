"""Who may see the dashboard and who may act through it.

Five checks, each answering with a page that says what was refused and why:

* **The host** (without a token): only requests sent to a loopback name (``localhost``,
  ``127.0.0.1``, ``[::1]``, any port) or to a host given with ``--allowed-host`` are
  served. A page of another site whose name the attacker re-points at 127.0.0.1 (DNS
  rebinding) reaches the server under its own name, so it gets a 400 and nothing else.
* **The token** (optional): with one set, every page but the login page and the static
  files needs the login cookie (or ``Authorization: Bearer <token>``, for scripts). The
  cookie holds when it was issued and an HMAC of the token and that time, never the
  token, so it survives restarts, works across processes that share the token, expires
  after :data:`SESSION_MAX_AGE` and after :data:`SESSION_IDLE` unused (a page or an
  action renews it, a live fragment's poll does not: a tab left open logs out), and
  changing the token logs everyone out. It keeps the name given at login, for the
  audit. Wrong tokens are throttled per client address (:class:`LoginThrottle`).
* **Read-only**: every action (a POST) is refused with 403.
* **Cross-site requests**: an action must come from a page of the dashboard itself. Two
  checks, both must pass: the browser's ``Origin`` must name an allowed host (and its
  ``Sec-Fetch-Site`` must not say cross-site), and the form's ``csrf`` field must be the
  HMAC of the request's host keyed by the per-session ``qtasks_csrf`` cookie (a random
  value set on the first page; a site elsewhere can neither read it nor set it, and a
  form of one host name is refused under another). The cookies are ``HttpOnly`` and
  ``SameSite=Strict``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "AUTH_COOKIE",
    "CSRF_COOKIE",
    "LOOPBACK_HOSTS",
    "SESSION_IDLE",
    "SESSION_MAX_AGE",
    "Guard",
    "LoginThrottle",
    "Refusal",
    "Session",
    "checked_hosts",
    "is_loopback",
]

AUTH_COOKIE: Final = "qtasks_auth"
CSRF_COOKIE: Final = "qtasks_csrf"
#: Host names that only this machine resolves: served without a token, on any port.
LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "[::1]")
#: Seconds a login lasts (a working day); then the login page asks for the token again.
SESSION_MAX_AGE: Final = 12 * 3600
#: Seconds a login lasts unused (an hour); then the login page asks for the token again.
SESSION_IDLE: Final = 3600
#: A session's last use is written again at most this often (seconds), so that a busy
#: page does not send a new cookie with every answer.
_RENEW_EVERY: Final = 30
#: The longest name a login keeps (the audit says who with it).
NAME_MAX: Final = 64
#: Browsers that fetch from a page elsewhere say so in this header (all current ones).
_CROSS_SITE: Final = frozenset({"cross-site", "same-site"})


class Refusal(Exception):
    """A request the dashboard refuses: the HTTP status and the sentence to show."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Session:
    """A login, as its cookie says: when it was made, when it was last used (seconds
    since the epoch) and the name given at login (``""``: none)."""

    issued: int
    seen: int
    name: str


class Guard:
    """The host, token, read-only and cross-site checks of one dashboard.

    :param allowed_hosts: host names served besides the loopback ones, as the browser's
        address bar shows them: ``ops.example.com`` (any port) or ``ops.example.com:8443``.
    :param session_max_age: seconds a login lasts at most.
    :param session_idle: seconds a login lasts unused.
    :raises ValueError: for an empty token, an allowed host that is not a host name, or
        a session length that is not a positive number of seconds.
    """

    def __init__(
        self,
        *,
        token: str | None,
        read_only: bool,
        allowed_hosts: Iterable[str] = (),
        session_max_age: int = SESSION_MAX_AGE,
        session_idle: int = SESSION_IDLE,
    ) -> None:
        if token is not None and not token.strip():
            raise ValueError("token is empty: give a non-empty token, or None for no login")
        for name, value in (("session_max_age", session_max_age), ("session_idle", session_idle)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name} must be a whole number of seconds, 1 or more, not {value!r}"
                )
        self.session_max_age = session_max_age
        self.session_idle = session_idle
        self.read_only = read_only
        self._token = token
        self.allowed_hosts = checked_hosts(allowed_hosts)
        self._hosts = [_split_host(h) for h in (*LOOPBACK_HOSTS, *self.allowed_hosts)]
        self.throttle = LoginThrottle(clock=time.monotonic)

    @property
    def has_token(self) -> bool:
        """Whether pages need a login."""
        return self._token is not None

    # -- the host ----------------------------------------------------------------------

    def listed(self, host: str) -> bool:
        """Whether ``host`` (a ``Host`` header, or an Origin's ``host:port``) is a
        loopback name or one given in ``allowed_hosts``."""
        name, port = _split_host(host)
        return any(name == n and (p is None or p == port) for n, p in self._hosts)

    def check_host(self, host: str) -> None:
        """Raise :class:`Refusal` (400) unless the dashboard is served under ``host``:
        with a token any host is (pages need the login), without one only listed ones."""
        if self._token is not None or self.listed(host):
            return
        name = _split_host(host)[0] or "?"
        given = ", ".join(self.allowed_hosts)
        raise Refusal(
            400,
            f"refused: this dashboard is not served under the host {host!r}. Without a "
            f"token it answers only to {', '.join(LOOPBACK_HOSTS)}"
            f"{f' and {given}' if given else ''}, so that a page of another site cannot "
            "reach it under its own name (DNS rebinding). To use this name, start it with "
            f"--allowed-host {name} (create_app(..., allowed_hosts=[{name!r}])), or give "
            "it a token.",
        )

    # -- the token ---------------------------------------------------------------------

    def logged_in(self, request: Request) -> bool:
        """Whether ``request`` carries a login cookie that has not expired, or the token
        itself."""
        if self._token is None or self.session(request) is not None:
            return True
        return self._bearer(request)

    def session(self, request: Request) -> Session | None:
        """The login of ``request``'s cookie, if it is ours and has not expired (neither
        past its max age nor unused for longer than the idle time)."""
        if self._token is None:
            return None
        parts = request.cookies.get(AUTH_COOKIE, "").split(".")
        if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        issued, seen, name, proof = parts
        now = time.time()
        # A cookie from the future (a clock set back) is let through for a minute.
        fresh = (
            -60 <= now - int(issued) <= self.session_max_age
            and -60 <= now - int(seen) <= self.session_idle
        )
        expected = self._proof(issued, seen, name)
        if not fresh or not hmac.compare_digest(proof.encode(), expected.encode()):
            return None
        try:
            decoded = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Session(int(issued), int(seen), decoded)

    def session_ends(self, session: Session) -> float:
        """When ``session`` ends if it is not used again (seconds since the epoch)."""
        return min(session.issued + self.session_max_age, session.seen + self.session_idle)

    def who(self, request: Request) -> str:
        """Who acts, for the audit: the name given at login (``"unnamed"`` without
        one), ``"api"`` for a script sending the token, the client's address when the
        dashboard has no token."""
        if self._token is None:
            return client_address(request)
        session = self.session(request)
        if session is not None:
            return session.name or "unnamed"
        return "api" if self._bearer(request) else "anonymous"

    def _bearer(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given)

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the token (compared in constant time)."""
        if self._token is None:
            return True
        return hmac.compare_digest(given.encode(), self._token.encode())

    def login_cookie(
        self, issued: float | None = None, *, seen: float | None = None, name: str = ""
    ) -> str:
        """The login cookie's value for a login at ``issued`` (now by default), last
        used at ``seen`` (``issued`` by default), by ``name``."""
        stamp = str(int(time.time() if issued is None else issued))
        last = stamp if seen is None else str(int(seen))
        encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
        return f"{stamp}.{last}.{encoded}.{self._proof(stamp, last, encoded)}"

    def log_in(self, request: Request, response: Response, name: str = "") -> None:
        """Set the login cookie on ``response``, for ``name`` (see :func:`login_name`)."""
        self._set_cookie(
            request,
            response,
            AUTH_COOKIE,
            self.login_cookie(name=name),
            max_age=self.session_max_age,
        )

    def renew(self, request: Request, response: Response) -> None:
        """Mark ``request``'s login used now (a page or an action, never a poll): the
        idle time starts again. Written at most every few seconds."""
        session = self.session(request)
        now = time.time()
        if session is None or now - session.seen < _RENEW_EVERY:
            return
        left = session.issued + self.session_max_age - now
        cookie = self.login_cookie(session.issued, seen=now, name=session.name)
        self._set_cookie(request, response, AUTH_COOKIE, cookie, max_age=max(1, int(left)))

    def log_out(self, request: Request, response: Response) -> None:
        """Clear the login cookie."""
        response.delete_cookie(AUTH_COOKIE, path=_cookie_path(request))

    def _proof(self, issued: str, seen: str, name: str) -> str:
        assert self._token is not None
        message = f"qtasks-web-login:{issued}:{seen}:{name}".encode()
        return hmac.new(self._token.encode(), message, hashlib.sha256).hexdigest()

    # -- actions -----------------------------------------------------------------------

    def csrf_secret(self, request: Request) -> str:
        """The session's CSRF secret: the cookie's, or a new one (then :meth:`remember`
        sets it on the response)."""
        return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)

    @staticmethod
    def csrf_token(request: Request, secret: str) -> str:
        """What the forms of a page carry: the session's secret bound to the host the
        page was served under (a form of one name is refused under another)."""
        host = request.headers.get("host", "").lower().encode()
        return hmac.new(secret.encode(), b"qtasks-csrf:" + host, hashlib.sha256).hexdigest()

    def remember(self, request: Request, response: Response, secret: str) -> None:
        """Set the CSRF cookie on ``response`` if the browser does not have it yet."""
        if request.cookies.get(CSRF_COOKIE) != secret:
            self._set_cookie(request, response, CSRF_COOKIE, secret)

    def check_same_origin(self, request: Request, form: dict[str, str]) -> None:
        """Raise :class:`Refusal` unless ``request`` comes from a page of this dashboard:
        its Origin names an allowed host, and its ``csrf`` field is the session's token
        for the host it was sent to."""
        fetch_site = request.headers.get("sec-fetch-site", "")
        if fetch_site in _CROSS_SITE:
            raise Refusal(403, f"refused: a cross-site request (Sec-Fetch-Site: {fetch_site})")
        origin = request.headers.get("origin")
        if origin is not None:
            host = request.headers.get("host", "")
            netloc = "" if origin == "null" else urlsplit(origin).netloc.lower()
            # Never the Host header alone: under DNS rebinding the attacker names both.
            # With a token, the host the login was made under counts as allowed.
            allowed = self.listed(netloc) or (self._token is not None and netloc == host.lower())
            if not netloc or not allowed:
                raise Refusal(
                    403,
                    f"refused: the request comes from {origin}, not from a page of this "
                    f"dashboard ({host}). Behind a reverse proxy, pass the Host header on "
                    "(nginx: proxy_set_header Host $host), or allow the proxy's name with "
                    "--allowed-host.",
                )
        cookie = request.cookies.get(CSRF_COOKIE, "")
        field = form.get("csrf", "")
        expected = self.csrf_token(request, cookie) if cookie else ""
        if not expected or not field or not hmac.compare_digest(expected.encode(), field.encode()):
            raise Refusal(
                403,
                "refused: the form's CSRF token is missing or does not match this browser "
                "session and host. Reload the page and try again.",
            )

    def check_may_act(self) -> None:
        """Raise :class:`Refusal` in read-only mode."""
        if self.read_only:
            raise Refusal(403, "refused: this dashboard is read-only (started with --read-only)")

    # -- cookies -----------------------------------------------------------------------

    @staticmethod
    def _set_cookie(
        request: Request, response: Response, name: str, value: str, max_age: int | None = None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=_cookie_path(request),
            httponly=True,
            samesite="strict",
            # Behind a TLS proxy the scheme is https only when the server is told so
            # (uvicorn's --proxy-headers, which `qtasks web` turns on for loopback).
            secure=request.url.scheme == "https",
        )


class LoginThrottle:
    """Wrong tokens per client address: the first :attr:`FREE` are answered at once,
    then each one locks that address out for twice as long as the one before (1 s,
    2 s, 4 s... up to :attr:`MAX_DELAY`). A right token clears the address. At most
    :attr:`KEEP` addresses are remembered (the least recently wrong are forgotten
    first), so a flood from many addresses cannot grow the process."""

    __slots__ = ("_clock", "_failures")

    FREE: Final = 5
    MAX_DELAY: Final = 300.0
    KEEP: Final = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: address -> (wrong tokens in a row, locked until)
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def check(self, client: str) -> None:
        """Raise :class:`Refusal` (429, with ``Retry-After``) while ``client`` is
        locked out."""
        _, until = self._failures.get(client, (0, 0.0))
        wait = until - self._clock()
        if wait > 0:
            seconds = math.ceil(wait)
            raise Refusal(
                429,
                f"refused: too many wrong tokens from {client}. Try again in {seconds} s.",
                headers={"Retry-After": str(seconds)},
            )

    def failed(self, client: str) -> None:
        """Count a wrong token from ``client``."""
        count = self._failures.pop(client, (0, 0.0))[0] + 1
        delay = 0.0 if count < self.FREE else min(2.0 ** (count - self.FREE), self.MAX_DELAY)
        self._failures[client] = (count, self._clock() + delay)
        while len(self._failures) > self.KEEP:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s wrong tokens."""
        self._failures.pop(client, None)


def login_name(given: str) -> str:
    """The name typed at login as the session keeps it: printable, spaces collapsed,
    at most :data:`NAME_MAX` characters."""
    printable = "".join(c for c in given if c.isprintable())
    return " ".join(printable.split())[:NAME_MAX]


def client_address(request: Request) -> str:
    """The client's address, as the server saw it (``?`` when unknown)."""
    return request.client.host if request.client else "?"


def is_loopback(host: str) -> bool:
    """Whether the address ``host`` (``--host``) is reached from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _split_host(host: str) -> tuple[str, str | None]:
    """``Host``-header form into (name, port): ``[::1]:8080`` -> ``("[::1]", "8080")``;
    a bare IPv6 address is bracketed as browsers write it."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return f"{name}]", port or None
    if host.count(":") > 1:
        return f"[{host}]", None
    name, sep, port = host.partition(":")
    return name.rstrip("."), (port or None) if sep else None


def checked_hosts(entries: Iterable[str]) -> tuple[str, ...]:
    """``allowed_hosts``, each checked (:func:`_checked_host`).

    :raises ValueError: naming the first entry that is not a host name.
    """
    return tuple(_checked_host(entry) for entry in entries)


def _checked_host(entry: str) -> str:
    """An ``allowed_hosts`` entry, checked: a host name or address, with a port or not."""
    host = str(entry).strip().lower()
    name, port = _split_host(host)
    bad = (
        not name
        or name == "[]"
        or any(c in host for c in "/?#@*\\ \t")
        or (port is not None and not (port.isdigit() and 0 < int(port) < 65536))
    )
    if bad:
        raise ValueError(
            f"allowed host {entry!r} is not a host name: give it as a browser's address "
            "bar shows it, without scheme or path (ops.example.com, ops.example.com:8443, "
            "10.0.0.5, [fd00::5])"
        )
    return host


def _cookie_path(request: Request) -> str:
    """The dashboard's own path, so that two dashboards on one host keep apart."""
    return request.scope.get("root_path", "") or "/"
