"""agent.urls: finding URLs in Slack messages and screening them against the configured sites."""

from __future__ import annotations

import re
import time

import pytest

from agent.config import parse_config
from agent.urls import UnsafePath, extract_candidates, normalise, screen_urls, wire_path


def make_config(max_urls: int | None = None, hosts: list[str] | None = None, **limits):
    data = {
        "sites": [
            {"name": "shop", "hosts": hosts or ["shop.example", "www.shop.example"], "layers": ["varnish"]},
            {"name": "blog", "hosts": ["blog.example"], "layers": ["varnish"]},
        ],
        "layers": [{"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:1"}],
    }
    if max_urls is not None:
        limits["max_urls_per_request"] = max_urls
    if limits:
        data["limits"] = limits
    return parse_config(data)


@pytest.fixture
def config():
    return make_config()


def reasons(rejections) -> dict[str, str]:
    return {r.input: r.reason for r in rejections}


# ------------------------------------------------------------------------------------------ extract_candidates


def test_slack_links_take_the_url_part_and_unescape_it():
    text = "<@U024BE7LH> purge <https://shop.example/pricing> and <https://shop.example/a?x=1&amp;y=2|the A page>"
    assert extract_candidates(text) == ["https://shop.example/pricing", "https://shop.example/a?x=1&y=2"]


def test_slack_autolinked_bare_domain_keeps_slacks_url():
    # Slack turns a typed "shop.example/pricing" into <http://shop.example/pricing|shop.example/pricing>
    assert extract_candidates("<http://shop.example/pricing|shop.example/pricing>") == ["http://shop.example/pricing"]


def test_mentions_channels_and_specials_are_not_urls():
    text = "<@U123> <@U123|bob> <#C123|general> <#C456> <!here> <!channel> <!subteam^S123|@web-ops> <!date^1392734382^{date}|Feb 18>"
    assert extract_candidates(text) == []


def test_special_tokens_are_skipped_even_when_they_carry_a_link():
    # <!date^ts^format^link|fallback> is a date, not a URL someone asked to purge
    assert extract_candidates("<!date^1392734382^{date_short}^https://shop.example/x|Feb 18, 2014>") == []
    assert extract_candidates("<@U123|bob.smith> <#C123|web.ops>") == []


def test_label_is_not_a_second_url():
    assert extract_candidates("<https://shop.example/a|https://shop.example/a>") == ["https://shop.example/a"]


def test_urls_in_code_spans_and_blocks_are_found_and_unescaped():
    text = (
        "try this:\n```curl -X PURGE https://shop.example/code?a=1&amp;b=2\n"
        "echo &lt;https://shop.example/escaped&gt;```\nand `https://www.shop.example/span` too"
    )
    assert extract_candidates(text) == [
        "https://shop.example/code?a=1&b=2",
        "https://shop.example/escaped",
        "https://www.shop.example/span",
    ]


def test_bullet_and_numbered_lists():
    text = (
        "• <https://shop.example/1>\n"
        "- https://shop.example/2\n"
        "* https://shop.example/3\n"
        "1. https://shop.example/4\n"
        "2) https://shop.example/5\n"
        "3.https://shop.example/6\n"
        "•https://shop.example/7"
    )
    assert extract_candidates(text) == [f"https://shop.example/{i}" for i in range(1, 8)]


def test_separators_commas_semicolons_newlines_spaces():
    text = (
        "https://shop.example/a, https://shop.example/b; https://shop.example/c\n"
        "https://shop.example/d https://shop.example/e,https://shop.example/f;https://shop.example/g"
    )
    assert extract_candidates(text) == [f"https://shop.example/{c}" for c in "abcdefg"]


def test_commas_inside_a_url_path_are_kept():
    assert extract_candidates("https://shop.example/a,b;c?x=1,2") == ["https://shop.example/a,b;c?x=1,2"]


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("see https://shop.example/x).", "https://shop.example/x"),
        ("(https://shop.example/x)", "https://shop.example/x"),
        ("is it https://shop.example/x?", "https://shop.example/x"),
        ("purge https://shop.example/x!", "https://shop.example/x"),
        ("'https://shop.example/x'", "https://shop.example/x"),
        ('"https://shop.example/x"', "https://shop.example/x"),
        ("“https://shop.example/x”", "https://shop.example/x"),
        ("[https://shop.example/x]", "https://shop.example/x"),
        ("*https://shop.example/x*", "https://shop.example/x"),
        ("_https://shop.example/x_", "https://shop.example/x"),
        ("~https://shop.example/x~", "https://shop.example/x"),
        ("https://shop.example/x...", "https://shop.example/x"),
        ("https://shop.example/x:", "https://shop.example/x"),
        ("https://a.com/wiki/Foo_(bar)", "https://a.com/wiki/Foo_(bar)"),
        ("(see https://a.com/wiki/Foo_(bar))", "https://a.com/wiki/Foo_(bar)"),
        ("https://a.com/wiki/Foo_(bar)).", "https://a.com/wiki/Foo_(bar)"),
        ("https://shop.example/snake_case_", "https://shop.example/snake_case_"),
        # markup characters are trimmed only when they close what the character before the URL opened
        ("purge https://shop.example/x~", "https://shop.example/x~"),
        ("purge https://shop.example/~user~ now", "https://shop.example/~user~"),
        ("purge https://shop.example/products/*", "https://shop.example/products/*"),
        ("purge https://shop.example/products/*.", "https://shop.example/products/*"),
        ("*https://shop.example/products/**", "https://shop.example/products/*"),
        ("~https://shop.example/x~.", "https://shop.example/x"),
        ("(*https://shop.example/x*)", "https://shop.example/x"),
        ("_https://shop.example/x~_", "https://shop.example/x~"),
        # a link is taken as Slack gives it: the way to purge a URL that really ends in punctuation
        ("<https://shop.example/x!>", "https://shop.example/x!"),
        ("<https://shop.example/x~>", "https://shop.example/x~"),
    ],
)
def test_trailing_punctuation_and_unbalanced_brackets(text, url):
    assert extract_candidates(text) == [url]


def test_non_http_schemes_are_candidates():
    text = (
        "<javascript:alert(1)> ftp://files.shop.example/a file:///etc/passwd <mailto:bob@shop.example|bob@shop.example> "
        "data:text/html,hi javascript:alert(2)"
    )
    assert extract_candidates(text) == [
        "javascript:alert(1)",
        "ftp://files.shop.example/a",
        "file:///etc/passwd",
        "mailto:bob@shop.example",
        "data:text/html,hi",
        "javascript:alert(2)",
    ]


def test_schemeless_urls_that_are_obviously_urls():
    text = "check www.shop.example/pricing and shop.example/sale, www.shop.example too"
    assert extract_candidates(text) == ["www.shop.example/pricing", "shop.example/sale", "www.shop.example"]


def test_words_that_merely_contain_dots_are_not_urls():
    text = "edit agent/urls.py and config.yaml, e.g. see README.md; v1.2/3 is out; mail bob@shop.example; metadata: x"
    assert extract_candidates(text) == []


def test_candidates_keep_message_order_across_kinds():
    text = "`https://shop.example/c` then <https://shop.example/a> then www.shop.example/b then https://shop.example/d"
    assert extract_candidates(text) == [
        "https://shop.example/c",
        "https://shop.example/a",
        "www.shop.example/b",
        "https://shop.example/d",
    ]


def test_empty_and_plain_text():
    assert extract_candidates("") == []
    assert extract_candidates("please purge the pricing page, thanks!") == []
    assert extract_candidates("only https:// links please") == []


# ---------------------------------------------------------------------------------------------- normalise


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://Shop.Example/Pricing", "https://shop.example/Pricing"),
        ("https://shop.example:443/a", "https://shop.example/a"),
        ("http://shop.example:80/a", "http://shop.example/a"),
        ("http://shop.example:443/a", "http://shop.example:443/a"),
        ("https://shop.example:80/a", "https://shop.example:80/a"),
        ("https://shop.example:8443/a", "https://shop.example:8443/a"),
        ("https://shop.example/a#section-2", "https://shop.example/a"),
        ("https://shop.example", "https://shop.example/"),
        ("https://shop.example?q=1", "https://shop.example/?q=1"),
        ("https://shop.example/a?B=2&a=1&a=1", "https://shop.example/a?B=2&a=1&a=1"),
        ("https://shop.example/a%2Fb/%7Euser/./x/../y", "https://shop.example/a%2Fb/~user/y"),
        ("https://shop.example/a?", "https://shop.example/a?"),
        ("https://shop.example./a", "https://shop.example/a"),
        ("www.shop.example/pricing", "https://www.shop.example/pricing"),
        ("shop.example:8080/x", "https://shop.example:8080/x"),
        ("https://[::1]:443/", "https://[::1]/"),
        ("https://User:Pw@Shop.Example/", "https://User:Pw@shop.example/"),
    ],
)
def test_normalise(url, expected):
    assert normalise(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("https://", "no host"),
        ("https:///path", "no host"),
        ("https:shop.example/x", "//"),
        ("https://shop.example:http/", "not a number"),
        ("https://shop.example:99999/", "out of range"),
        ("https://[::1/", "closing"),
        ("https://shop.example\\@evil.net/", "backslash"),
        ("https://shop.example/a b", "spaces"),
        ("javascript:alert(1)", "never fetched"),
        ("ftp://shop.example/a", "only http and https"),
    ],
)
def test_normalise_refuses_with_a_reason(url, reason):
    with pytest.raises(ValueError, match=reason):
        normalise(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # RFC 3986 5.2.4: dot segments go, also when percent-encoded
        ("https://shop.example/a/./b/../c", "https://shop.example/a/c"),
        ("https://shop.example/x/../about", "https://shop.example/about"),
        ("https://shop.example/a/%2e%2E/b", "https://shop.example/b"),
        ("https://shop.example/a/%2E./b", "https://shop.example/b"),
        ("https://shop.example/a/.%2e/b", "https://shop.example/b"),
        ("https://shop.example/a/.", "https://shop.example/a/"),
        ("https://shop.example/a/..", "https://shop.example/"),
        ("https://shop.example/a/..?x=1", "https://shop.example/?x=1"),
        ("https://shop.example/a//..", "https://shop.example/a/"),
        ("https://shop.example/a/.../b..c/.d", "https://shop.example/a/.../b..c/.d"),  # names, not dot segments
        # percent-encoding: upper-case hex, unreserved characters decoded, the rest encoded as UTF-8
        ("https://shop.example/%7euser/%41%2d%5f", "https://shop.example/~user/A-_"),
        ("https://shop.example/a%2fb", "https://shop.example/a%2Fb"),  # an encoded slash stays encoded
        ("https://shop.example/caf\u00e9", "https://shop.example/caf%C3%A9"),
        ("https://shop.example/caf%c3%a9", "https://shop.example/caf%C3%A9"),
        ("https://shop.example/\u5546\u54c1", "https://shop.example/%E5%95%86%E5%93%81"),
        ('https://shop.example/a"b{c}^d`e[f]', "https://shop.example/a%22b%7Bc%7D%5Ed%60e%5Bf%5D"),
        ("https://shop.example/a!$&'()+,;=:@b", "https://shop.example/a!$&'()+,;=:@b"),  # allowed in a path as is
        ("https://shop.example/s?q=caf\u00e9&x=%7e&y=a%2bb&z=/?", "https://shop.example/s?q=caf%C3%A9&x=~&y=a%2Bb&z=/?"),
        ("https://shop.example/s?q=../x", "https://shop.example/s?q=../x"),  # the query has no segments
        # a single trailing * (everything under a path) is kept as the last character
        ("https://shop.example/products/*", "https://shop.example/products/*"),
        ("https://shop.example/*", "https://shop.example/*"),
        ("https://shop.example/a/../products/*", "https://shop.example/products/*"),
    ],
)
def test_normalise_path_as_rfc_3986_says(url, expected):
    assert normalise(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://shop.example/../about", "climbs above the site's root"),
        ("https://shop.example/../../service/SU1Z0isxPaozGVKXdv0eY/purge_all", "climbs above the site's root"),
        ("https://shop.example/a/../../b", "climbs above the site's root"),
        ("https://shop.example/%2e%2e/about", "climbs above the site's root"),
        ("https://shop.example/.%2E/about", "climbs above the site's root"),
        ("https://shop.example/..%2Fadmin", "encoded slash (%2F)"),
        ("https://shop.example/a%2F..%2F..%2Fadmin", "encoded slash (%2F)"),
        ("https://shop.example/a%2f.%2fb", "encoded slash (%2F)"),
        ("https://shop.example/a%5C..%5Cadmin", "backslash (%5C)"),
        ("https://shop.example/a\\..\\admin", "contains a backslash"),
        ("https://shop.example/a%zz", "not followed by two hex digits"),
        ("https://shop.example/100%", "not followed by two hex digits"),
        ("https://shop.example/a*b", "only a trailing * (everything under a path) is supported"),
        ("https://shop.example/*/x", "only a trailing * (everything under a path) is supported"),
        ("https://shop.example/a**", "only a trailing * (everything under a path) is supported"),
        ("https://shop.example/a?q=*", "only a trailing * (everything under a path) is supported"),
        ("https://shop.example/a*?q=1", "only a trailing * (everything under a path) is supported"),
    ],
)
def test_paths_that_could_mean_another_page_are_refused_with_a_reason(url, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalise(url)


def test_wire_path_is_the_normalised_ascii_target():
    assert wire_path("https://Shop.example/a/../caf\u00e9?b=1") == ("shop.example", "/caf%C3%A9?b=1")
    assert wire_path("https://shop.example/a?") == ("shop.example", "/a")
    assert wire_path("https://shop.example") == ("shop.example", "/")
    for screened in ("https://shop.example/a%2Fb/~c?d=%2B", "https://shop.example/s?q=caf%C3%A9"):
        host, path = wire_path(screened)
        assert f"https://{host}{path}" == screened  # a screened URL goes out exactly as screened


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/relative/path", "no host"),
        ("https://shop.example/../admin", "climbs above"),
        ("ftp://shop.example/a", "only http and https"),
    ],
)
def test_wire_path_refuses_what_cannot_be_sent(url, reason):
    with pytest.raises(UnsafePath, match=reason):
        wire_path(url)


def test_normalise_does_not_fold_unicode_into_ascii():
    # U+212A KELVIN SIGN lower-cases to ASCII "k" with str.lower(); the host must not become "key.example"
    assert normalise("https://\u212aey.example/") == "https://\u212aey.example/"


# ---------------------------------------------------------------------------------------------- screen_urls


def test_realistic_message(config):
    text = (
        "<@U024BE7LH> can you purge these after the deploy? <!subteam^S0614TZR7|@web-ops>\n"
        "• <https://shop.example/pricing>\n"
        "• <https://shop.example/a?x=1&amp;y=2|the A page>\n"
        "• <http://www.shop.example/sale|www.shop.example/sale>\n"
        "• <https://blog.example/post/42>\n"
        "also ```https://shop.example/code?a=1&amp;b=2``` and <https://evil.net/x> thanks <#C123|general>"
    )
    urls, rejected = screen_urls(text, config)
    assert urls == [
        "https://shop.example/pricing",
        "https://shop.example/a?x=1&y=2",
        "http://www.shop.example/sale",
        "https://blog.example/post/42",
        "https://shop.example/code?a=1&b=2",
    ]
    assert [r.input for r in rejected] == ["https://evil.net/x"]


def test_order_is_first_seen(config):
    text = " ".join(f"https://shop.example/{c}" for c in "qwertyuiopasdfghjklzxcvbnm")
    urls, _ = screen_urls(text, config)
    assert urls == [f"https://shop.example/{c}" for c in "qwertyuiopasdfghjklzxcvbnm"]


def test_duplicates_after_normalisation_are_dropped_silently(config):
    text = (
        "<https://shop.example/b> https://shop.example/a HTTPS://SHOP.EXAMPLE/a https://shop.example:443/a "
        "https://shop.example/a#top https://shop.example./a <https://shop.example/a|again> https://shop.example/b "
        "shop.example/a https://shop.example/A"
    )
    urls, rejected = screen_urls(text, config)
    assert urls == ["https://shop.example/b", "https://shop.example/a", "https://shop.example/A"]
    assert rejected == []


def test_repeated_rejections_are_reported_once(config):
    _, rejected = screen_urls("https://evil.net/ https://EVIL.net/ javascript:x javascript:x", config)
    assert [r.input for r in rejected] == ["https://evil.net/", "javascript:x"]


def test_bullet_list_of_fifty(config):
    text = "please purge:\n" + "\n".join(
        f"• <https://shop.example/products/{i}?ref=slack&amp;v={i}|shop.example/products/{i}>" for i in range(50)
    )
    urls, rejected = screen_urls(text, config)
    assert urls == [f"https://shop.example/products/{i}?ref=slack&v={i}" for i in range(50)]
    assert rejected == []


def test_an_email_link_is_ignored_quietly_not_listed_as_not_touched(config):
    # Slack turns "bob@shop.example" into <mailto:…|…>: it is a person to write to, not a page nobody touched
    text = "ask <mailto:bob@shop.example|bob@shop.example> or MAILTO:x@shop.example about https://shop.example/pricing"
    assert screen_urls(text, config) == (["https://shop.example/pricing"], [])


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("<javascript:alert(1)>", ["javascript: links are never fetched"]),
        ("ftp://shop.example/a", ["only http and https URLs can be purged"]),
        ("file:///etc/passwd", ["only http and https URLs can be purged"]),
        ("data:text/html,hi", ["only http and https URLs can be purged"]),
        ("gopher://shop.example/", ["only http and https URLs can be purged"]),
    ],
)
def test_non_http_schemes_are_rejected(config, url, words):
    urls, rejected = screen_urls(url, config)
    assert urls == []
    assert len(rejected) == 1
    for word in words:
        assert word in rejected[0].reason


@pytest.mark.parametrize(
    ("url", "real_host"),
    [
        ("https://shop.example@evil.net/", "evil.net"),
        ("https://user:pw@shop.example/", "shop.example"),
        ("https://user@shop.example/", "shop.example"),
        ("<https://shop.example:443@evil.net/pricing>", "evil.net"),
    ],
)
def test_userinfo_is_rejected(config, url, real_host):
    urls, rejected = screen_urls(url, config)
    assert urls == []
    reason = rejected[0].reason
    assert "userinfo" in reason and "password" in reason
    assert real_host in reason
    assert "pw" not in reason.replace("password", "")  # the password itself is not repeated


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.5/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://8.8.8.8/",
        "http://[::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://1.2.3.4./",
    ],
)
def test_ip_literals_are_rejected(config, url):
    urls, rejected = screen_urls(url, config)
    assert urls == []
    assert "IP" in rejected[0].reason and "address" in rejected[0].reason


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "http://LOCALHOST:8080/x",
        "http://shop.localhost/",
        "http://printer.local/",
        "http://metadata.google.internal/",
        "http://router.home.arpa/",
        "http://intranet/",
    ],
)
def test_local_and_private_names_are_rejected(config, url):
    urls, rejected = screen_urls(url, config)
    assert urls == []
    reason = rejected[0].reason
    assert "local" in reason or "private" in reason or "internal" in reason


@pytest.mark.parametrize(
    ("url", "char_name"),
    [
        ("https://shóp.example/pricing", "LATIN SMALL LETTER O WITH ACUTE"),
        ("https://ѕhop.example/pricing", "CYRILLIC SMALL LETTER DZE"),  # Cyrillic dze, not Latin s
        ("https://shoр.example/", "CYRILLIC SMALL LETTER ER"),
        ("https://xn--shp-hna.example/", "LATIN SMALL LETTER O WITH ACUTE"),  # punycode of shóp.example
        ("https://\u212aey.example/", "KELVIN SIGN"),
        ("https://ｓｈｏｐ.example/", "FULLWIDTH LATIN SMALL LETTER S"),
    ],
)
def test_lookalike_hosts_are_rejected(config, url, char_name):
    urls, rejected = screen_urls(url, config)
    assert urls == []
    reason = rejected[0].reason
    assert "look-alike" in reason and "non-ASCII" in reason
    assert char_name in reason


def test_lookalike_reason_names_the_site_it_imitates(config):
    _, rejected = screen_urls("https://ѕhop.example/", config)
    assert "look like shop.example" in rejected[0].reason


def test_punycode_host_is_accepted_when_exactly_configured():
    config = make_config(hosts=["xn--shp-hna.example"])
    urls, rejected = screen_urls("https://xn--shp-hna.example/a https://xn--shp-hna.example.evil.net/a", config)
    assert urls == ["https://xn--shp-hna.example/a"]
    assert [r.input for r in rejected] == ["https://xn--shp-hna.example.evil.net/a"]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://www.shop.example.evil.net/", "www.shop.example.evil.net"),
        ("https://evil-shop.example/", "evil-shop.example"),
        ("https://shop.example.com/", "shop.example.com"),
        ("https://cdn.shop.example/", "cdn.shop.example"),
        ("https://example/", None),  # single label: rejected as an internal name instead
        ("https://shop.examp1e/", "shop.examp1e"),
    ],
)
def test_only_exactly_configured_hosts_are_accepted(config, url, host):
    urls, rejected = screen_urls(url, config)
    assert urls == []
    if host:
        assert rejected[0].reason.startswith(f"{host} is not a site cachebot manages")
        assert "shop" in rejected[0].reason and "blog" in rejected[0].reason  # configured sites are listed


def test_trailing_dot_host_is_the_configured_host(config):
    urls, rejected = screen_urls("https://shop.example./pricing https://www.shop.example./", config)
    assert urls == ["https://shop.example/pricing", "https://www.shop.example/"]
    assert rejected == []


@pytest.mark.parametrize("url", ["https://shop.example:8443/a", "http://shop.example:8080/a", "https://shop.example:80/a"])
def test_non_default_port_is_rejected(config, url):
    urls, rejected = screen_urls(url, config)
    assert urls == []
    assert "unexpected port" in rejected[0].reason


def test_default_ports_are_accepted(config):
    urls, rejected = screen_urls("https://shop.example:443/a http://shop.example:80/b", config)
    assert urls == ["https://shop.example/a", "http://shop.example/b"]
    assert rejected == []


def test_schemeless_urls_are_treated_as_https(config):
    urls, rejected = screen_urls("www.shop.example/pricing and blog.example/post/1", config)
    assert urls == ["https://www.shop.example/pricing", "https://blog.example/post/1"]
    assert rejected == []


def test_unparsable_candidates_are_rejected_with_the_parse_reason(config):
    urls, rejected = screen_urls("https://shop.example:http/x and <https:shop.example/y>", config)
    assert urls == []
    assert reasons(rejected) == {
        "https://shop.example:http/x": "the port 'http' is not a number",
        "https:shop.example/y": "'https:' must be followed by '//' and a host name",
    }


def test_backslash_host_confusion_is_rejected(config):
    # browsers go to evil.net here; some parsers see shop.example
    urls, rejected = screen_urls("https://evil.net\\@shop.example/", config)
    assert urls == []
    assert "backslash" in rejected[0].reason


def test_dot_segments_cannot_escape_and_the_other_urls_go_on(config):
    text = (
        "purge <https://shop.example/../../service/SU1Z0isxPaozGVKXdv0eY/purge_all> "
        "https://shop.example/pricing <https://shop.example/..%2F..%2Fadmin/flush>"
    )
    urls, rejected = screen_urls(text, config)
    assert urls == ["https://shop.example/pricing"]
    assert [r.input for r in rejected] == [
        "https://shop.example/../../service/SU1Z0isxPaozGVKXdv0eY/purge_all",
        "https://shop.example/..%2F..%2Fadmin/flush",
    ]
    assert "climbs above the site's root" in rejected[0].reason
    assert "encoded slash" in rejected[1].reason


def test_the_same_page_written_two_ways_is_one_url(config):
    urls, rejected = screen_urls("https://shop.example/x/../about https://shop.example/%61bout shop.example/about", config)
    assert urls == ["https://shop.example/about"]
    assert rejected == []


def test_a_trailing_star_reaches_planning_as_the_last_character(config):
    # the contract with prefix scopes: the * is kept, exactly once, at the very end
    urls, rejected = screen_urls("<https://shop.example/products/*> and <https://shop.example/a*b>", config)
    assert urls == ["https://shop.example/products/*"]
    assert reasons(rejected) == {
        "https://shop.example/a*b": "a * inside the path cannot be purged: only a trailing * (everything under a "
        "path) is supported"
    }


def test_mixed_junk(config):
    text = (
        "<@U1> :fire: purge <https://shop.example/ok> pls, not <https://evil.net/x> or "
        "<javascript:alert(document.cookie)|click me> or http://127.0.0.1/ (https://ѕhop.example/) "
        "or https://shop.example@evil.net/ ok? <!here> also `https://blog.example/ok2`."
    )
    urls, rejected = screen_urls(text, config)
    assert urls == ["https://shop.example/ok", "https://blog.example/ok2"]
    assert [r.input for r in rejected] == [
        "https://evil.net/x",
        "javascript:alert(document.cookie)",
        "http://127.0.0.1/",
        "https://ѕhop.example/",
        "https://shop.example@evil.net/",
    ]
    assert all(r.reason for r in rejected)


# ------------------------------------------------------------------------------------------------- limits


def test_at_the_limit_everything_is_accepted():
    config = make_config(max_urls=3)
    urls, rejected = screen_urls("https://shop.example/1 https://shop.example/2 https://shop.example/3", config)
    assert len(urls) == 3 and rejected == []


def test_duplicates_do_not_count_towards_the_limit():
    config = make_config(max_urls=2)
    urls, rejected = screen_urls("https://shop.example/1 https://shop.example/2 https://SHOP.example/1#x", config)
    assert urls == ["https://shop.example/1", "https://shop.example/2"]
    assert rejected == []


def test_rejected_urls_do_not_count_towards_the_limit():
    config = make_config(max_urls=2)
    urls, rejected = screen_urls("https://shop.example/1 https://evil.net/ https://shop.example/2", config)
    assert urls == ["https://shop.example/1", "https://shop.example/2"]
    assert [r.input for r in rejected] == ["https://evil.net/"]


def test_over_the_limit_with_5000_urls_rejects_all_and_loses_none(config):
    lines = [f"• <https://shop.example/p/{i}?a=1&amp;b={i}|shop.example/p/{i}>" for i in range(5000)]
    lines.insert(10, "<https://evil.net/zzz>")
    lines.append("<https://shop.example/p/7?a=1&amp;b=7>")  # duplicate: not counted, not rejected twice
    text = "<@U1> purge all of these\n" + "\n".join(lines)

    urls, rejected = screen_urls(text, config)

    assert urls == []
    assert len(rejected) == 5001
    over = [r for r in rejected if "limit" in r.reason]
    assert [r.input for r in over] == [f"https://shop.example/p/{i}?a=1&b={i}" for i in range(5000)]
    assert over[0].reason == (
        "this request has 5,000 URLs; the limit is 1,000 per request — split it into smaller batches"
    )
    # the other rejection keeps its place in message order and its own reason
    assert rejected[10].input == "https://evil.net/zzz"
    assert "not a site cachebot manages" in rejected[10].reason


def test_5000_bare_urls_are_all_kept_under_a_higher_limit(config):
    text = ", ".join(f"https://shop.example/p/{i}" for i in range(5000))
    config = make_config(max_urls=10_000)
    urls, rejected = screen_urls(text, config)
    assert len(urls) == 5000 and rejected == []


def test_size_limits_default_to_8192_per_url_and_half_a_million_per_message(config):
    assert config.limits.max_url_length == 8192
    assert config.limits.max_message_chars == 500_000


def test_a_huge_url_is_refused_with_the_limit_and_the_others_go_on(config):
    huge = "https://shop.example/" + "a" * 70_000
    urls, rejected = screen_urls(f"purge {huge} and https://shop.example/pricing", config)
    assert urls == ["https://shop.example/pricing"]
    assert len(rejected) == 1
    assert rejected[0].reason == "this URL is 70,021 characters long; the limit is 8,192 (limits.max_url_length)"
    assert len(rejected[0].input) <= 300 and rejected[0].input.startswith("https://shop.example/aaa")


def test_a_url_that_grows_past_the_limit_when_encoded_is_refused(config):
    long_word = "\u00e9" * 3000  # 3,000 characters as typed, 18,000 percent-encoded
    urls, rejected = screen_urls(f"https://shop.example/{long_word} https://shop.example/ok", config)
    assert urls == ["https://shop.example/ok"]
    assert rejected[0].reason.startswith("this URL is, percent-encoded, 18,021 characters long; the limit is 8,192")


def test_the_url_limit_is_configurable():
    config = make_config(max_url_length=256)
    url = "https://shop.example/" + "b" * 240
    urls, rejected = screen_urls(url, config)
    assert urls == [] and "the limit is 256 (limits.max_url_length)" in rejected[0].reason
    assert screen_urls(url[:256], config)[0] == [url[:256]]


def test_a_message_over_the_limit_is_refused_whole_naming_the_limit():
    config = make_config(max_message_chars=1000)
    text = "purge https://shop.example/pricing please " + "x" * 1000
    urls, rejected = screen_urls(text, config)
    assert urls == []
    assert len(rejected) == 1
    assert rejected[0].reason == (
        "this message is 1,042 characters long; the limit is 1,000 (limits.max_message_chars): nothing in it was "
        "read — send the URLs in smaller messages"
    )
    assert rejected[0].input.startswith("purge https://shop.example/pricing") and len(rejected[0].input) <= 60
    assert screen_urls(text[:1000], config)[0] == ["https://shop.example/pricing"]  # at the limit it is read


@pytest.mark.parametrize(("key", "value"), [("max_url_length", 100), ("max_url_length", 70_000), ("max_message_chars", 10)])
def test_limits_out_of_range_are_config_errors(key, value):
    from agent.config import ConfigError

    with pytest.raises(ConfigError, match=f"limits.{key}"):
        make_config(**{key: value})


@pytest.mark.parametrize(
    "text",
    ["a" * 100_000, "a-" * 50_000, "www" * 30_000, "xn--" * 30_000, "https://x/" + ")" * 100_000, "a." * 50_000],
)
def test_hostile_input_does_not_make_extraction_slow(text):
    started = time.perf_counter()
    extract_candidates(text)
    assert time.perf_counter() - started < 1.0


def test_ignored_query_params_are_dropped_at_screening_and_named() -> None:
    from agent.config import parse_config
    from agent.urls import drop_ignored_params, screen

    config = parse_config({
        "sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["v"],
                   "ignore_query_params": ["utm_*", "fbclid"]}],
        "layers": [{"name": "v", "kind": "varnish", "endpoint": "http://127.0.0.1:6081"}],
    })
    assert drop_ignored_params("https://shop.example/p?utm_source=a&b=1&fbclid=x", config) == \
        ("https://shop.example/p?b=1", ["utm_source", "fbclid"])
    assert drop_ignored_params("https://shop.example/p?utm_source=a", config) == \
        ("https://shop.example/p", ["utm_source"])
    assert drop_ignored_params("https://shop.example/p?Utm_source=a", config)[1] == []  # names are case-sensitive
    assert drop_ignored_params("https://shop.example/p?b=1", config) == ("https://shop.example/p?b=1", [])
    urls, rejected, dropped = screen(
        "see https://shop.example/p?utm_source=a and https://shop.example/p?utm_medium=b", config)
    assert urls == ["https://shop.example/p"] and not rejected
    assert [(d.url, d.params) for d in dropped] == [("https://shop.example/p", ["utm_source", "utm_medium"])]
