"""Finding the URLs in a Slack message and deciding which of them cachebot may purge.

Pure functions, no network:

* ``extract_candidates(text)`` – every URL-like thing in Slack-formatted text, in message order, as written
  (Slack's ``&amp;``/``&lt;``/``&gt;`` undone, surrounding punctuation trimmed).
* ``normalise(url)`` – the canonical form of an http(s) URL: lower-case scheme and host, no default port, no
  fragment, no trailing dot on the host, empty path becomes ``/``; the path is normalised as RFC 3986 says (dot
  segments removed, percent-encoding normalised, see ``normalise_path``) and the query's percent-encoding too. A
  scheme-less ``www.shop.example/x`` is taken as https. Raises ``ValueError`` with a plain-language reason
  otherwise.
* ``screen_urls(text, config)`` – the accepted, de-duplicated URLs in first-seen order, plus a ``Rejection``
  with a human reason for everything else that looked like a URL.
* ``wire_path(url)`` – (host, path?query) exactly as a layer may put it on the wire; raises ``UnsafePath``.

Acceptance is an allow-list: a URL is accepted only when its host is *exactly* one of ``config.all_hosts``
(which the config restricts to plain ASCII DNS names). Every other check exists to give a better reason.

Paths are normalised once, here, so that every layer sends (and keys) the page the way a browser asks for it,
and no client or server down the line can resolve a ``..`` out of a layer's purge prefix: a path that climbs
above the site's root, or hides a ``.``/``..`` segment behind an encoded slash (``%2F``) or backslash
(``%5C``), is refused with a reason instead of being guessed at.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import string
import unicodedata
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, NamedTuple

from agent.models import DroppedQuery, Rejection

if TYPE_CHECKING:
    from agent.config import AppConfig

__all__ = ["UnsafePath", "extract_candidates", "normalise", "normalise_path", "screen_urls", "wire_path"]

# --------------------------------------------------------------------------------------------- extraction

# Characters that can be part of a bare URL. Whitespace, angle brackets, quotes, backticks (code spans), pipes,
# bullets, typographic quotes and zero-width characters end one.
_BODY_CHAR = "[^\\s<>\"`|\u2022\u201c\u201d\u2018\u2019\u00ab\u00bb\u200b-\u200d\u2060\ufeff]"
# ...but stop before Slack's escaped angle brackets and before ``,``/``;`` that start another URL.
_BODY = rf"(?:(?!&[lg]t;|[,;](?:[a-z][a-z0-9+-]{{0,31}}://|www\.)){_BODY_CHAR})"
_SPECIAL_SCHEMES = "javascript|vbscript|data|mailto|file"

_TOKEN = re.compile(
    # Slack link / mention: <url>, <url|label>, <@U1>, <#C1|name>, <!here>
    r"<(?P<angle>[^<>|\s]*)(?:\|[^<>]*)?>"
    # anything with scheme:// (starting a word, and of bounded length, so long words cannot make the scan slow)
    rf"|(?<![a-z+-])(?P<scheme>[a-z][a-z0-9+-]{{0,31}}://{_BODY}*)"
    # schemes written without // (javascript:alert(1), mailto:x@y, data:text/html,...)
    rf"|(?<![\w.+-])(?P<special>(?:{_SPECIAL_SCHEMES}):{_BODY}+)"
    # scheme-less www.host/...
    rf"|(?<![\w.@/:+-])(?P<www>www\.{_BODY}+)"
    # scheme-less host.tld/path (a path is required, so "config.py" or "shop.example is down" don't count)
    rf"|(?<![\w.@/:+-])(?P<hostpath>(?:[^\W_][\w-]*\.)+(?:[^\W\d_]{{2,63}}|xn--[a-z0-9-]+)(?::\d{{1,5}})?/{_BODY}*)",
    re.IGNORECASE,
)

_SLACK_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
# Sentence punctuation after a bare URL ("see https://x/y." / "purge https://x/y!"). A URL that really ends in one
# of these must come as a link, <https://x/y!>, which is never trimmed (Slack sends every link it recognises so).
_TRAILING = set(".,;:!?'") | set("\u2026\u3002\u3001")  # … 。 、
# Slack markup around a bare URL: *bold*, _italic_, ~strike~. Trimmed only when the same character opens it, so
# /~user~, /snake_case_ and a trailing * (everything under a path) are kept as written.
_WRAPPERS = set("*_~")
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _unescape(text: str) -> str:
    """Undo Slack's escaping of ``&``, ``<`` and ``>`` (in one pass, so ``&amp;lt;`` stays ``&lt;``)."""
    if "&" not in text:
        return text
    return _SLACK_ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def _trim(url: str, preceded_by: str) -> str:
    """Drop sentence punctuation, the closing half of markup around the URL (``*…*``, ``_…_``, ``~…~``) and
    unbalanced closing brackets from the end of a bare URL."""
    end = len(url)
    opened = {closer: url.count(opener) for closer, opener in _CLOSERS.items()}
    closed = {closer: url.count(closer) for closer in _CLOSERS}
    while end:
        last = url[end - 1]
        if last in _TRAILING:
            end -= 1
        elif last in _WRAPPERS and last == preceded_by:  # *https://…* closes the bold it opened
            end -= 1
            preceded_by = ""
        elif last in _CLOSERS and closed[last] > opened[last]:
            closed[last] -= 1
            end -= 1
        else:
            break
    return url[:end]


def extract_candidates(text: str) -> list[str]:
    """Every URL-like thing in Slack-formatted ``text``, in order of appearance, as written.

    Slack links give their URL part (the label is ignored); mentions, channel links and ``<!…>`` specials
    are skipped. Bare URLs are found anywhere, including inside code spans and blocks (which Slack does not
    linkify). Non-web schemes are returned too, so that they can be refused with a reason.
    """
    found: list[str] = []
    for match in _TOKEN.finditer(text or ""):
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "angle":
            if not value or value[0] in "@#!" or not any(c in value for c in ":/."):
                continue
            found.append(_unescape(value))
            continue
        before = text[match.start() - 1] if match.start() else ""
        value = _trim(value, before)
        if kind == "scheme" and value.endswith("://"):  # "only https:// links please" names no URL
            continue
        if value:
            found.append(_unescape(value))
    return found


# ---------------------------------------------------------------------------------------------- parsing

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_KNOWN_SCHEMES = {
    "http", "https", "javascript", "vbscript", "data", "mailto", "file", "ftp", "ftps", "sftp", "ssh", "tel",
    "sms", "about", "blob", "chrome", "ws", "wss", "gopher", "ldap", "smb", "git", "s3", "news", "irc",
}  # fmt: skip
_DEFAULT_PORT = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class UnsafePath(ValueError):
    """A URL whose path cannot be sent to a cache without some client or server reading it as another page."""


# RFC 3986: unreserved characters are never percent-encoded in the normal form; a path may also hold sub-delims,
# ':', '@' and '/' literally, a query '?' too. Everything else is percent-encoded (UTF-8, upper-case hex).
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ENCODING = re.compile(r"%([0-9A-Fa-f]{2})|%|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]")
_HIDDEN_SEPARATOR = re.compile(r"%2F|%5C")  # an encoded slash or backslash, which some servers decode before resolving ".."
_DOT_SEGMENTS = frozenset((".", ".."))
_STAR_ONLY_AT_END = "only a trailing * (everything under a path) is supported"


def _encode_byte(match: re.Match[str]) -> str:
    pair = match.group(1)
    if pair is not None:
        char = chr(int(pair, 16))
        return char if char in _UNRESERVED else "%" + pair.upper()
    char = match.group(0)
    if char == "%":
        raise UnsafePath("the URL has a '%' that is not followed by two hex digits (a literal % is written %25)")
    try:
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafePath("the URL contains a character that is not valid text") from None


def _normalise_encoding(text: str) -> str:
    """Upper-case hex, unreserved characters decoded, everything that must be encoded encoded (``?`` is kept:
    the path has none, the query may)."""
    return _ENCODING.sub(_encode_byte, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path, except that climbing above the root is refused, not clamped."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if not kept:
                raise UnsafePath(
                    "the path climbs above the site's root with '..'; cachebot does not guess which page is meant: "
                    "paste the address as the browser shows it"
                )
            kept.pop()
        elif segment != ".":
            kept.append(segment)
            continue
        if last:  # "/a/.." and "/a/." both name the directory "/a/" ... or "/" here
            kept.append("")
    return "/" + "/".join(kept)


def _refuse_hidden_dot_segments(path: str) -> None:
    for segment in path.split("/"):
        if "%" in segment and any(piece in _DOT_SEGMENTS for piece in _HIDDEN_SEPARATOR.split(segment)):
            raise UnsafePath(
                "the path hides a '.' or '..' segment behind an encoded slash (%2F) or backslash (%5C), which some "
                "servers decode and resolve to another page"
            )


def normalise_path(path: str) -> str:
    """The RFC 3986 normal form of an absolute path (``/`` when empty); raises ``UnsafePath`` saying why not.

    Percent-encoding is normalised first (so ``%2e%2e`` is ``..``), then dot segments are removed (``/a/./b/../c``
    is ``/a/c``). Encoded slashes stay encoded. Refused: a literal backslash (browsers read it as ``/``, servers
    do not), a path that climbs above the root, a ``.``/``..`` hidden behind ``%2F``/``%5C``, and a ``*``
    anywhere but at the very end.
    """
    if "\\" in path:
        raise UnsafePath(
            "the path contains a backslash (\\), which browsers read as '/' and servers read differently; "
            "write / (or %5C for a literal backslash)"
        )
    path = _normalise_encoding(path or "/")
    if not path.startswith("/"):
        path = "/" + path
    if "." in path:
        path = _remove_dot_segments(path)
        _refuse_hidden_dot_segments(path)
    if "*" in path[:-1]:
        raise UnsafePath(f"a * inside the path cannot be purged: {_STAR_ONLY_AT_END}")
    return path


def _normalise_query(query: str | None) -> str | None:
    if query is None:
        return None
    if "*" in query:
        raise UnsafePath(f"a * in the query string would be read as a wildcard by some caches: {_STAR_ONLY_AT_END}")
    return _normalise_encoding(query)


class _Parts(NamedTuple):
    scheme: str
    userinfo: str | None
    host: str  # without brackets for IPv6; ASCII letters lower-cased, other characters as given
    bracketed: bool
    port: int | None  # None when absent or the scheme's default
    path: str
    query: str | None  # None when there is no '?'

    def url(self) -> str:
        host = f"[{self.host}]" if self.bracketed else self.host
        userinfo = f"{self.userinfo}@" if self.userinfo is not None else ""
        port = f":{self.port}" if self.port is not None else ""
        query = f"?{self.query}" if self.query is not None else ""
        return f"{self.scheme}://{userinfo}{host}{port}{self.path}{query}"


def _scheme_reason(scheme: str) -> str:
    if scheme in ("javascript", "vbscript"):
        return f"{scheme}: links are never fetched; only http and https URLs can be purged"
    if scheme == "file":
        return "file: URLs point at files on someone's computer; only http and https URLs can be purged"
    if scheme == "mailto":
        return "mailto: is an e-mail address, not a web page; only http and https URLs can be purged"
    if scheme == "data":
        return "data: URLs carry their content inline and are never cached; only http and https URLs can be purged"
    return f"{scheme}: URLs cannot be purged; only http and https URLs can be purged"


def _parse(url: str) -> _Parts:
    text = url.strip()
    if not text:
        raise ValueError("empty URL")
    if _CONTROL.search(text):
        raise ValueError("the URL contains spaces or control characters")
    match = _SCHEME.match(text)
    scheme = match.group(1).translate(_ASCII_LOWER) if match else ""
    if match and (scheme in _KNOWN_SCHEMES or not text[match.end() : match.end() + 1].isdigit()):
        rest = text[match.end() :]
    else:  # "www.shop.example/x" or "shop.example:8080/x": no scheme, meant as https
        scheme, rest = "https", "//" + text
    if scheme not in _DEFAULT_PORT:
        raise ValueError(_scheme_reason(scheme))
    if not rest.startswith("//"):
        raise ValueError(f"'{scheme}:' must be followed by '//' and a host name")

    rest = rest[2:]
    end = len(rest)
    for sep in "/?#":
        pos = rest.find(sep)
        if pos != -1 and pos < end:
            end = pos
    authority, rest = rest[:end], rest[end:]
    if "\\" in authority:
        raise ValueError("the host part contains a backslash, which browsers and servers read differently")
    rest = rest.split("#", 1)[0]
    path, question, raw_query = rest.partition("?")
    query = _normalise_query(raw_query if question else None)
    if path.endswith("*") and query is not None:
        raise UnsafePath(f"a trailing * cannot be combined with a query string: {_STAR_ONLY_AT_END}")
    path = normalise_path(path)

    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise ValueError("the host starts with '[' but has no closing ']'")
        host, bracketed, port_text = hostport[1:close], True, hostport[close + 1 :]
        if port_text and not port_text.startswith(":"):
            raise ValueError("unexpected text after the ']' of the host")
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
        bracketed = False
    host = host.translate(_ASCII_LOWER)
    if not bracketed and host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError("the URL has no host name")

    port: int | None = None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(f"the port {port_text!r} is not a number")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"the port {port} is out of range")
        if port == _DEFAULT_PORT[scheme]:
            port = None
    return _Parts(scheme, userinfo if at else None, host, bracketed, port, path, query)


def normalise(url: str) -> str:
    """The canonical form of an http(s) URL; raises ``ValueError`` saying why when there is none.

    Scheme and host are lower-cased (ASCII letters only, so e.g. the Kelvin sign never turns into ``k``), the
    default port, the fragment and a trailing dot on the host are dropped, the path is ``normalise_path``'s and
    the query's percent-encoding is normalised the same way (an empty path becomes ``/``). A user
    name/password, if present, is kept so callers can refuse it.
    """
    return _parse(url).url()


@functools.lru_cache(maxsize=16_384)
def wire_path(url: str) -> tuple[str, str]:
    """``https://Shop.example/a/../caf\u00e9?b=1`` -> (``shop.example``, ``/caf%C3%A9?b=1``): the host and the
    request target a layer sends for ``url`` (pure ASCII, no dot segments, nothing a client re-encodes).

    Raises ``UnsafePath`` (a ``ValueError``) with a reason when there is none: not an absolute http(s) URL, or a
    path that ``normalise_path`` refuses. For an already screened URL this is its own path and query.

    Remembered: every layer asks for every page two or three times during a purge (6% of the CPU of a purge of
    500 URLs × 5 layers, profiled); the answer depends on the text alone, and a refusal is not remembered.
    """
    try:
        parts = _parse(url)
    except UnsafePath:
        raise
    except ValueError as exc:
        raise UnsafePath(str(exc)) from None
    query = f"?{parts.query}" if parts.query is not None and parts.query != "" else ""
    return parts.host, parts.path + query


# ---------------------------------------------------------------------------------------------- screening

_PRIVATE_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "broadcasthost"}
_PRIVATE_SUFFIXES = (
    ".localhost", ".local", ".localdomain", ".internal", ".intranet", ".lan", ".home", ".corp", ".private",
    ".home.arpa", ".arpa",
)  # fmt: skip
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")

# A few common letters from other scripts that look like ASCII ones, only to say what a host imitates.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j",
        "ԁ": "d", "һ": "h", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ο": "o", "α": "a", "ρ": "p", "ν": "v",
        "τ": "t", "υ": "u", "κ": "k", "ι": "i",
    }
)  # fmt: skip


def _ip_reason(host: str, bracketed: bool) -> str | None:
    """Why ``host`` is an IP address rather than a name (including 2130706433, 0x7f.1, 0177.0.0.1)."""
    if bracketed:
        return f"{host} is an IPv6 address; cachebot only purges its configured sites, by name"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        kind = "a private or loopback" if (address.is_private or address.is_loopback) else "an"
        return f"{host} is {kind} IP address; cachebot only purges its configured sites, by name"
    # Browsers (WHATWG URL standard) read any host whose last label is a number as an IPv4 address,
    # so http://2130706433/, http://0x7f.1/ and http://0177.1/ all mean 127.0.0.1.
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        return (
            f"{host} is an IP address written in numeric form (browsers read it as an IPv4 address); "
            "cachebot only purges its configured sites, by name"
        )
    return None


def _private_reason(host: str) -> str | None:
    if host in _PRIVATE_NAMES or host.endswith(_PRIVATE_SUFFIXES) or host == "local":
        return f"{host} is a local or private network name; cachebot only purges its configured public sites"
    if "." not in host:
        return f"{host} is a single-label (internal network) name; cachebot only purges its configured sites"
    return None


def _lookalike_reason(host: str, config: AppConfig) -> str | None:
    if host.isascii() and not any(label.startswith("xn--") for label in host.split(".")):
        return None
    shown = host
    if host.isascii():  # punycode: show what it displays as
        try:
            shown = host.encode("ascii").decode("idna")
        except UnicodeError:
            shown = host
    odd = [c for c in dict.fromkeys(shown) if not c.isascii()]
    described = ", ".join(f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})" for c in odd[:3])
    imitated = "".join(
        c for c in unicodedata.normalize("NFKD", shown.translate(_CONFUSABLES)) if not unicodedata.combining(c)
    ).translate(_ASCII_LOWER)
    reason = f"the host {host} "
    reason += f"(shown as {shown}) " if shown != host else ""
    reason += "contains non-ASCII characters"
    reason += f" {described}" if described else ""
    if imitated in config.all_hosts:
        reason += f" that make it look like {imitated} without being it"
    return reason + "; look-alike host names are never purged"


def _unknown_host_reason(host: str, config: AppConfig) -> str:
    sites = ", ".join(f"{site.name} ({', '.join(site.hosts)})" for site in config.sites)
    return f"{host} is not a site cachebot manages (configured sites: {sites})"


_SHOWN_CHARS = 300  # a rejected input is echoed back at most this long


def _shown(text: str, limit: int = _SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters for echoing back (a 70,000-character URL must not flood the channel)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _too_long(what: str, length: int, limit: int, key: str) -> str:
    return f"{what} {length:,} characters long; the limit is {limit:,} (limits.{key})"


def message_too_long(text: str, config: AppConfig) -> str | None:
    """Why ``text`` is refused whole for its length, or None. Nothing in such a message is read or acted on."""
    limit = config.limits.max_message_chars
    if len(text or "") <= limit:
        return None
    return _too_long("this message is", len(text), limit, "max_message_chars") + (
        ": nothing in it was read — send the URLs in smaller messages"
    )


def _screen_one(candidate: str, config: AppConfig) -> tuple[str, str | None]:
    """(key, reason): the normalised URL (or the input when unparsable) and why it is refused, if it is."""
    limit = config.limits.max_url_length
    if len(candidate) > limit:  # before parsing: a huge URL costs nothing more than its length check
        return candidate, _too_long("this URL is", len(candidate), limit, "max_url_length")
    try:
        parts = _parse(candidate)
    except ValueError as exc:
        return candidate, str(exc)
    key = parts.url()
    if len(key) > limit:  # percent-encoding can make a URL up to nine times longer
        return key, _too_long("this URL is, percent-encoded,", len(key), limit, "max_url_length")
    if parts.userinfo is not None:
        return key, (
            f"the URL has a user name or password (userinfo) before the host, so it really points at "
            f"{parts.host}; links carrying credentials are never purged"
        )
    host = parts.host
    reason = _ip_reason(host, parts.bracketed) or _private_reason(host)
    if reason:
        return key, reason
    if host not in config.all_hosts:
        return key, _lookalike_reason(host, config) or _unknown_host_reason(host, config)
    if parts.port is not None:
        default = _DEFAULT_PORT[parts.scheme]
        return key, (
            f"unexpected port {parts.port}: cachebot only purges {host} on the standard port "
            f"({default} for {parts.scheme})"
        )
    return key, None


def _is_email_link(candidate: str) -> bool:
    return candidate[:7].lower() == "mailto:"


def drop_ignored_params(url: str, config: AppConfig) -> tuple[str, list[str]]:
    """``url`` without the query parameters its site's caches leave out of their key
    (``sites[].ignore_query_params``: names or shell patterns, case-sensitive like parameter names), and the
    names dropped. The other parameters keep their order and spelling; no parameter left, no ``?`` either."""
    head, question, query = url.partition("?")
    site = config.site_for_host(_host_of(head))
    if not question or site is None or not site.ignore_query_params:
        return url, []
    kept, dropped = [], []
    for pair in query.split("&"):
        name = _unescape_name(pair.partition("=")[0])
        if name and any(fnmatchcase(name, pattern) for pattern in site.ignore_query_params):
            dropped.append(name)
        else:
            kept.append(pair)
    if not dropped:
        return url, []
    rest = "&".join(p for p in kept if p)
    return head + (f"?{rest}" if rest else ""), list(dict.fromkeys(dropped))


def _host_of(head: str) -> str:
    """The host of a normalised URL's part before its query (``https://host/path``)."""
    return head.partition("://")[2].partition("/")[0]


def _unescape_name(name: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), name) if "%" in name else name


class Screening(NamedTuple):
    urls: list[str]
    rejected: list[Rejection]
    dropped: list[DroppedQuery]  # parameters taken off accepted URLs (``drop_ignored_params``)


def screen_urls(text: str, config: AppConfig) -> tuple[list[str], list[Rejection]]:
    """``screen``'s URLs and rejections, for callers that need not say which query parameters were dropped."""
    urls, rejected, _ = screen(text, config)
    return urls, rejected


def screen(text: str, config: AppConfig) -> Screening:
    """Accepted URLs (normalised, first-seen order, no duplicates) and a rejection for everything else.

    When there are more distinct acceptable URLs than ``config.limits.max_urls_per_request``, none is
    accepted: each becomes a rejection stating the count and the limit, so nothing is silently dropped. A
    message longer than ``limits.max_message_chars`` is refused whole (one rejection naming the limit); a URL
    longer than ``limits.max_url_length`` is refused on its own and the others go on.
    """
    if too_long := message_too_long(text, config):
        return Screening([], [Rejection(input=_shown(" ".join(text[:200].split()), 60), reason=too_long)], [])
    seen: set[str] = set()
    dropped: dict[str, list[str]] = {}  # accepted URL -> parameters taken off it
    accepted: list[tuple[int, str, str]] = []  # (position, normalised, as written)
    # (position, rejection); the position lets over-limit rejections merge back into message order
    rejected: list[tuple[int, Rejection]] = []
    for position, candidate in enumerate(extract_candidates(text)):
        if _is_email_link(candidate):  # Slack links every e-mail address: nobody meant it as a page to purge
            continue
        key, reason = _screen_one(candidate, config)
        if reason is None:  # the key the cache uses: marketing parameters it ignores are not part of it
            key, names = drop_ignored_params(key, config)
            if names:
                dropped[key] = list(dict.fromkeys(dropped.get(key, []) + names))
        if key in seen:
            continue
        seen.add(key)
        if reason is None:
            accepted.append((position, key, candidate))
        else:
            rejected.append((position, Rejection(input=_shown(candidate), reason=reason)))

    limit = config.limits.max_urls_per_request
    if len(accepted) <= limit:
        return Screening([url for _, url, _ in accepted], [rejection for _, rejection in rejected],
                         [DroppedQuery(url=url, params=names) for url, names in dropped.items()])

    reason = (
        f"this request has {len(accepted):,} URLs; the limit is {limit:,} per request — "
        "split it into smaller batches"
    )
    over = [(position, Rejection(input=written, reason=reason)) for position, _, written in accepted]
    merged = sorted(rejected + over, key=lambda item: item[0])
    return Screening([], [rejection for _, rejection in merged], [])
