"""Redis URLs made safe to print: every password replaced by ``***``.

Passwords hide in three places, and users do not always percent-encode them:

* the userinfo, ``redis://user:pass@host:6379/0``; an unencoded ``/``, ``?``, ``#``
  or ``@`` inside it makes :func:`urllib.parse.urlsplit` cut the URL in the wrong
  place and print the rest of the password as a path, query or fragment;
* the query, ``?password=...`` and ``?sentinel_password=...`` (redis-py reads both);
* multi-host URLs, ``redis+sentinel://:pw@h1:26379,h2:26379/mymaster`` and
  ``redis+cluster://...``, which ``urlsplit`` does not parse into a host at all.

So the URL is not parsed as a URL: the userinfo ends at the last ``@`` that is
followed by something shaped like a host list, and query passwords are masked
wherever they are. When in doubt, more is masked, never less.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

from .errors import TaskOptionError

__all__ = ["check_url", "mask_url"]

MASK: Final = "***"

#: What may follow the userinfo's ``@`` up to the path: hosts, ports, IPv6 brackets,
#: commas between the hosts of a sentinel or cluster URL (and nothing for ``unix://``).
_HOSTS: Final = re.compile(r"[A-Za-z0-9._~%\-\[\]:,]*(?=[/?#]|\Z)")
#: A password query parameter; its value runs to the next ``&name=`` (an unencoded
#: ``&`` or ``#`` inside the value stays masked) or to the end.
_QUERY_PASSWORD: Final = re.compile(
    r"([?&;](?:sentinel_)?password=)(.+?)(?=&[A-Za-z_][\w.\-]*=|\Z)", re.IGNORECASE
)


def check_url(url: str) -> str:
    """``url`` if its user name and password reach Redis as written.

    Raises :class:`~.errors.TaskOptionError`, on one line that names the field and
    the character, when the userinfo holds a ``/``, ``?`` or ``#`` (a URL parser ends
    the userinfo there and reads the rest of the password as the path, query or
    fragment: a wrong host or port, or a raw ``ValueError``), or a ``%`` that begins
    no ``%XX`` escape; and when a ``#`` follows it (the parser drops what comes after,
    so a ``?password=`` is cut short). ``@`` and ``:`` need no encoding: the userinfo
    ends at its last ``@`` and the password at its first ``:``.
    """
    _, sep, rest = url.partition("://")
    if not sep:
        return url
    at = _userinfo_end(rest)
    if at != -1:
        user, _, password = rest[:at].partition(":")
        for field, text in (("user name", user), ("password", password)):
            if bad := _UNENCODED.search(text):
                char = bad.group()
                raise TaskOptionError(
                    f"the {field} in the Redis URL {mask_url(url)} holds an unencoded "
                    f"{char!r}: percent-encode it ({char!r} as {quote(char, safe='')}), "
                    f"e.g. with urllib.parse.quote({field.split()[0]}, safe='')"
                )
    if "#" in rest[at + 1 :]:
        raise TaskOptionError(
            f"the Redis URL {mask_url(url)} holds a '#', where a URL ends (what follows "
            "is dropped): percent-encode it as %23 in a value such as ?password="
        )
    return url


#: What must be percent-encoded in a URL's user name or password.
_UNENCODED: Final = re.compile(r"[/?#]|%(?![0-9A-Fa-f]{2})")


def mask_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***``, safe to log or print.

    :param url: a Redis URL in any form redis-py accepts (``redis://``, ``rediss://``,
        ``unix://``, ``redis+sentinel://``, ``redis+cluster://``), or any other text
        (returned unchanged unless it holds a ``password=`` parameter).
    :returns: the same URL with the host, port, path and other parameters unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        rest = _mask_userinfo(rest)
    else:
        scheme, rest = "", url
    # Over the whole text, userinfo included: when no '@' could be told apart, a
    # query with '@' in a value may have been taken for a user name.
    return scheme + sep + _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", rest)


def _userinfo_end(rest: str) -> int:
    """The index of the ``@`` that ends the userinfo of ``rest`` (the URL after
    ``scheme://``), or -1 when it has none."""
    # The last '@' that a host list follows ends the userinfo: an '@' further on (in a
    # query value, say) is not followed by one, and one earlier is part of the password.
    end = len(rest)
    while (at := rest.rfind("@", 0, end)) != -1 and not _HOSTS.match(rest, at + 1):
        end = at
    return at


def _mask_userinfo(rest: str) -> str:
    """``rest`` (the URL after ``scheme://``) with the userinfo's password masked."""
    at = _userinfo_end(rest)
    if at == -1:
        return rest
    user, colon, password = rest[:at].partition(":")
    if "@" in user:
        # Not one plain user name (several credentials, or an unencoded '@' before
        # the ':'): any part of it may be a password.
        return f"{MASK}{rest[at:]}"
    if colon and password:
        return f"{user}:{MASK}{rest[at:]}"
    return rest
