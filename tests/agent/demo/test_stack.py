"""The local cache stack behaves like the real thing: asserted the FOSHttpCache way (MISS, HIT, purge, MISS)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from agent.demo.origin import ContentStore, serve_in_thread
from agent.demo.procs import Daemon, DaemonError, port_open
from agent.demo.stack import Stack, load_stack, start_stack

HOST = "shop.example"


def get(base: str, path: str, host: str = HOST, **headers: str) -> httpx.Response:
    return httpx.get(base + path, headers={"Host": host, **headers}, timeout=10)


def varnish_purge(stack: Stack, path: str, host: str = HOST) -> httpx.Response:
    return httpx.request("PURGE", stack.varnish_url + path, headers={"Host": host}, timeout=10)


def varnish_purgekeys(stack: Stack, *tags: str, soft: bool = False) -> httpx.Response:
    header = "xkey-softpurge" if soft else "xkey-purge"
    return httpx.request("PURGEKEYS", stack.varnish_url + "/", headers={header: " ".join(tags)}, timeout=10)


def nginx_purge(stack: Stack, path: str, host: str = HOST) -> httpx.Response:
    return httpx.get(stack.nginx_url + "/purge" + path, headers={"Host": host}, timeout=10)


# -- origin ------------------------------------------------------------------------------------------------
def test_origin_headers_tags_and_404(fresh_stack: Stack) -> None:
    product = get(fresh_stack.origin_url, "/products/shoes/runner")
    assert product.status_code == 200
    assert product.headers["cache-control"] == "public, max-age=3600"
    assert product.headers["etag"].startswith('"') and not product.headers["etag"].startswith("W/")
    assert product.headers["last-modified"].endswith("GMT")
    assert product.headers["content-type"].startswith("text/html")
    assert product.headers["xkey"] == "product-runner category-shoes"
    assert product.headers["surrogate-key"] == "product-runner category-shoes"
    assert product.headers["cache-tag"] == "product-runner,category-shoes"
    assert "Price: $80" in product.text

    listing = get(fresh_stack.origin_url, "/products/shoes").headers["xkey"].split()
    assert listing[0] == "category-shoes" and "product-runner" in listing and "product-beanie" not in listing
    home = get(fresh_stack.origin_url, "/").headers["xkey"].split()
    assert {"home", "product-runner", "product-beanie"} <= set(home)
    assert {"sitemap", "product-fedora"} <= set(get(fresh_stack.origin_url, "/sitemap.xml").headers["xkey"].split())
    assert get(fresh_stack.origin_url, "/feed.xml").headers["content-type"].startswith("application/rss+xml")
    assert "Pro plan: $10/month" in get(fresh_stack.origin_url, "/pricing").text

    head = httpx.head(fresh_stack.origin_url + "/pricing", headers={"Host": HOST})
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"]
    assert get(fresh_stack.origin_url, "/nope").status_code == 404
    assert get(fresh_stack.origin_url, "/products/socks").status_code == 404
    first = int(get(fresh_stack.origin_url, "/about").headers["x-origin-render"])
    assert int(get(fresh_stack.origin_url, "/about").headers["x-origin-render"]) > first


def test_origin_in_a_thread_without_app_cache(tmp_path: Path) -> None:
    with serve_in_thread(tmp_path / "content.json") as origin:
        assert "$10" in get(origin.url, "/pricing").text
        ContentStore(tmp_path / "content.json").edit("/pricing", "Pro plan: $12/month")
        response = get(origin.url, "/pricing")
        assert "$12" in response.text and response.headers["x-app-cache"] == "OFF"


# -- varnish -----------------------------------------------------------------------------------------------
def test_varnish_miss_hit_purge_miss(fresh_stack: Stack) -> None:
    assert get(fresh_stack.varnish_url, "/pricing").headers["x-cache"] == "MISS"
    hit = get(fresh_stack.varnish_url, "/pricing", Cookie="session=abc")  # cookies do not bypass the demo cache
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["xkey"] == "pricing"  # tags stay visible to clients
    assert get(fresh_stack.varnish_url, "/pricing", host="www.shop.example").headers["x-cache"] == "MISS"

    purged = varnish_purge(fresh_stack, "/pricing")
    assert purged.status_code == 200 and purged.headers["x-purged-count"] == "1"
    assert varnish_purge(fresh_stack, "/pricing").headers["x-purged-count"] == "0"
    assert get(fresh_stack.varnish_url, "/pricing").headers["x-cache"] == "MISS"
    assert get(fresh_stack.varnish_url, "/pricing").headers["x-cache"] == "HIT"
    # the other host's copy was not touched
    assert get(fresh_stack.varnish_url, "/pricing", host="www.shop.example").headers["x-cache"] == "HIT"


def test_varnish_purgekeys_clears_every_page_with_the_tag(fresh_stack: Stack) -> None:
    pages = ["/products/shoes/runner", "/products/shoes", "/products/hats/beanie", "/products/hats"]
    for path in pages:
        get(fresh_stack.varnish_url, path)
        assert get(fresh_stack.varnish_url, path).headers["x-cache"] == "HIT"

    response = varnish_purgekeys(fresh_stack, "product-runner")
    assert response.status_code == 200
    # the product page and the shoes listing; objects an earlier test cached and fresh_stack banned stay in
    # xkey's index until the ban lurker removes them, and xkey counts them too
    assert int(response.headers["x-purged-count"]) >= 2
    assert get(fresh_stack.varnish_url, "/products/shoes/runner").headers["x-cache"] == "MISS"
    assert get(fresh_stack.varnish_url, "/products/shoes").headers["x-cache"] == "MISS"
    assert get(fresh_stack.varnish_url, "/products/hats/beanie").headers["x-cache"] == "HIT"
    assert get(fresh_stack.varnish_url, "/products/hats").headers["x-cache"] == "HIT"
    assert varnish_purgekeys(fresh_stack, "no-such-tag").headers["x-purged-count"] == "0"
    assert httpx.request("PURGEKEYS", fresh_stack.varnish_url + "/").status_code == 400


def test_varnish_softpurge_serves_stale_once(fresh_stack: Stack) -> None:
    get(fresh_stack.varnish_url, "/about")
    before = get(fresh_stack.varnish_url, "/about")
    assert before.headers["x-cache"] == "HIT"
    assert int(varnish_purgekeys(fresh_stack, "about", soft=True).headers["x-purged-count"]) == 1
    stale = get(fresh_stack.varnish_url, "/about")
    # a soft purge is not a MISS: the old object is served (grace) while a fresh one is fetched
    assert stale.headers["x-cache"] == "HIT"
    assert stale.headers["x-origin-render"] == before.headers["x-origin-render"]


def test_varnish_ban_by_regex_and_bad_regex(fresh_stack: Stack) -> None:
    for path in ("/products/hats/beanie", "/products/hats/fedora", "/about"):
        get(fresh_stack.varnish_url, path)
    banned = httpx.request("BAN", fresh_stack.varnish_url + "/", headers={"X-Ban-Url": "^/products/hats/", "X-Ban-Host": "^shop\\.example$"})
    assert banned.status_code == 200
    assert get(fresh_stack.varnish_url, "/products/hats/beanie").headers["x-cache"] == "MISS"
    assert get(fresh_stack.varnish_url, "/products/hats/fedora").headers["x-cache"] == "MISS"
    assert get(fresh_stack.varnish_url, "/about").headers["x-cache"] == "HIT"

    bad = httpx.request("BAN", fresh_stack.varnish_url + "/", headers={"X-Ban-Url": "^/products/(hats"})
    assert bad.status_code == 400
    assert "regex" in bad.headers["x-ban-error"].lower()
    assert httpx.request("BAN", fresh_stack.varnish_url + "/").status_code == 400  # nothing to ban on


# -- nginx edge --------------------------------------------------------------------------------------------
def test_nginx_miss_hit_purge_200_then_404_then_miss(fresh_stack: Stack) -> None:
    first = get(fresh_stack.nginx_url, "/products/hats/fedora")
    assert first.status_code == 200 and first.headers["x-cache-status"] == "MISS"
    hit = get(fresh_stack.nginx_url, "/products/hats/fedora")
    assert hit.headers["x-cache-status"] == "HIT"
    assert hit.headers["xkey"] == "product-fedora category-hats"
    assert hit.headers["surrogate-key"] == "product-fedora category-hats"
    assert hit.headers["etag"] == first.headers["etag"]

    assert nginx_purge(fresh_stack, "/products/hats/fedora").status_code == 200
    assert nginx_purge(fresh_stack, "/products/hats/fedora").status_code == 404
    assert get(fresh_stack.nginx_url, "/products/hats/fedora").headers["x-cache-status"] == "MISS"
    # the key includes the query string: a variant is its own entry
    assert get(fresh_stack.nginx_url, "/products/hats/fedora?ref=mail").headers["x-cache-status"] == "MISS"
    assert nginx_purge(fresh_stack, "/products/hats/fedora?ref=mail").status_code == 200


def test_the_stylesheet_has_a_gzip_and_an_identity_variant_in_every_cache(fresh_stack: Stack) -> None:
    """Vary: Accept-Encoding at the origin; nginx keeps the two apart by its key, and one purge drops the variant
    its own Accept-Encoding names. Pages other than stylesheets and scripts are never gzipped."""
    import gzip

    plain = get(fresh_stack.origin_url, "/static/shop.css", **{"Accept-Encoding": "identity"})
    with httpx.stream("GET", fresh_stack.origin_url + "/static/shop.css", timeout=10,
                      headers={"Host": HOST, "Accept-Encoding": "gzip, deflate, br"}) as packed:
        raw = b"".join(packed.iter_raw())  # as sent, not inflated by httpx
    assert plain.headers["vary"] == packed.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in plain.headers and packed.headers["content-encoding"] == "gzip"
    assert packed.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'
    assert gzip.decompress(raw) == plain.content
    assert "vary" not in get(fresh_stack.origin_url, "/pricing", **{"Accept-Encoding": "gzip"}).headers

    for encoding in ("gzip", "identity", "gzip", "identity"):
        get(fresh_stack.nginx_url, "/static/shop.css", **{"Accept-Encoding": encoding})
    status = {e: get(fresh_stack.nginx_url, "/static/shop.css", **{"Accept-Encoding": e}) for e in ("gzip", "identity")}
    assert {e: r.headers["x-cache-status"] for e, r in status.items()} == {"gzip": "HIT", "identity": "HIT"}
    assert status["gzip"].headers["content-encoding"] == "gzip" and "content-encoding" not in status["identity"].headers

    purge = httpx.get(fresh_stack.nginx_url + "/purge/static/shop.css",
                      headers={"Host": HOST, "Accept-Encoding": "gzip"}, timeout=10)
    assert purge.status_code == 200
    after = {e: get(fresh_stack.nginx_url, "/static/shop.css", **{"Accept-Encoding": e}).headers["x-cache-status"]
             for e in ("identity", "gzip")}
    assert after == {"identity": "HIT", "gzip": "MISS"}


# -- the whole chain ---------------------------------------------------------------------------------------
def test_edit_stays_stale_until_app_cache_key_deleted_and_layers_purged(fresh_stack: Stack) -> None:
    stack = fresh_stack
    for path in ("/pricing", "/"):
        assert "$10" in get(stack.nginx_url, path).text
    stack.content.edit("/pricing", "Pro plan: $12/month. Free plan: $0/month.")

    # every layer still serves the old price, the origin too (its Redis app cache)
    edge = get(stack.nginx_url, "/pricing")
    assert "$10" in edge.text and edge.headers["x-cache-status"] == "HIT"
    assert "$10" in get(stack.varnish_url, "/pricing").text
    origin = get(stack.origin_url, "/pricing")
    assert "$10" in origin.text and origin.headers["x-app-cache"] == "HIT"

    # purging the HTTP caches alone refetches the stale body from the origin
    assert varnish_purge(stack, "/pricing").status_code == 200
    assert nginx_purge(stack, "/pricing").status_code == 200
    refetched = get(stack.nginx_url, "/pricing")
    assert refetched.headers["x-cache-status"] == "MISS" and "$10" in refetched.text

    # delete the app-cache key: the origin is fresh, the caches (refilled above) are not
    client = redis.Redis.from_url(stack.redis_url)
    try:
        assert client.delete(stack.app_cache_key("/pricing")) == 1
    finally:
        client.close()
    assert "$12" in get(stack.origin_url, "/pricing").text
    assert "$10" in get(stack.nginx_url, "/pricing").text

    # inside out: varnish, then the edge
    varnish_purge(stack, "/pricing")
    nginx_purge(stack, "/pricing")
    fresh = get(stack.nginx_url, "/pricing")
    assert "$12" in fresh.text and fresh.headers["x-cache-status"] == "MISS"
    assert fresh.headers["etag"] != edge.headers["etag"]
    # the home page shows the prices too and was not purged: still stale (what dependency rules are for)
    assert "$10" in get(stack.nginx_url, "/").text


# -- stack plumbing ----------------------------------------------------------------------------------------
def test_config_dict_shape(stack: Stack) -> None:
    config = stack.config_dict()
    assert config["sites"][0]["hosts"] == ["shop.example", "www.shop.example"]
    assert config["sites"][0]["origin"] == stack.origin_url
    assert config["sites"][0]["layers"] == ["appcache", "varnish", "edge"]
    layers = {layer["name"]: layer for layer in config["layers"]}
    assert layers["appcache"] == {"name": "appcache", "kind": "redis", "endpoint": stack.redis_url,
                                  "options": {"key_templates": ["demo:page:{host}{path}"]}}
    assert layers["varnish"]["endpoint"] == stack.varnish_url
    assert layers["edge"]["options"] == {"purge_path_prefix": "/purge"}
    assert config["storage"]["sqlite_path"] == str(stack.workdir / "state.sqlite")
    key = layers["appcache"]["options"]["key_templates"][0].format(host="shop.example", path="/pricing")
    assert key == stack.app_cache_key("/pricing") == "demo:page:shop.example/pricing"


def test_config_is_valid_and_the_redis_layer_derives_the_origins_keys(fresh_stack: Stack) -> None:
    from agent.config import parse_config
    from agent.layers import build_layer

    config = parse_config(fresh_stack.config_dict())
    appcache = build_layer(config.layer_named("appcache"))
    client = redis.Redis.from_url(fresh_stack.redis_url)
    try:
        for url in ("http://shop.example/pricing", "http://www.shop.example/pricing?utm=mail"):
            get(fresh_stack.origin_url, url.split("example", 1)[1], host=url.split("/")[2])
            exact, _patterns = appcache.keys_for(url)
            assert exact and client.exists(*exact) == len(exact), (url, exact, client.keys("demo:*"))
    finally:
        client.close()


def test_state_file_lets_another_process_find_and_stop_the_stack(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "demo", hosts=("shop.example",))
    try:
        state = stack.save_pids()
        assert json.loads(state.read_text())["nginx_url"] == stack.nginx_url
        code = (
            "import sys, httpx\n"
            "from agent.demo.stack import load_stack, stop_saved_stack\n"
            "s = load_stack(sys.argv[1])\n"
            "s.content.edit('/about', 'Edited from another process')\n"
            "print(httpx.get(s.origin_url + '/about', headers={'Host': 'other.example'}).text)\n"
            "print(stop_saved_stack(sys.argv[1]))\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "demo")], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert "Edited from another process" in out.stdout and out.stdout.strip().endswith("True")
        for url in (stack.nginx_url, stack.varnish_url, stack.origin_url):
            assert not port_open("127.0.0.1", int(url.rsplit(":", 1)[1]))
        assert not state.exists()
        with pytest.raises(FileNotFoundError):
            load_stack(tmp_path / "demo")
    finally:
        stack.stop()


def test_daemon_that_fails_to_start_reports_its_log(tmp_path: Path) -> None:
    daemon = Daemon(name="broken", argv=["sh", "-c", "echo 'bad config line 3'; exit 3"], port=1,
                    workdir=tmp_path, log_path=tmp_path / "broken.log")
    with pytest.raises(DaemonError, match="(?s)exited with status 3.*bad config line 3"):
        daemon.start()


def test_redis_and_memcached_daemons(redis_daemon: Daemon, memcached_daemon: Daemon) -> None:
    client = redis.Redis.from_url(redis_daemon.url)
    try:
        client.set("devstack:probe", "1")
        redis_daemon.restart()
        assert client.get("devstack:probe") is None  # a restart empties it (no persistence)
    finally:
        client.close()
    with socket.create_connection((memcached_daemon.host, memcached_daemon.port), timeout=5) as sock:
        sock.sendall(b"set k 0 0 1\r\nv\r\nget k\r\n")
        data = b""
        while b"END\r\n" not in data:
            data += sock.recv(1024)
    assert b"STORED" in data and b"VALUE k 0 1\r\nv" in data


def test_many_pages_are_added_in_one_write_and_the_origin_serves_each(tmp_path):
    store = ContentStore.create(tmp_path / "content.json")
    store.retire("/about")
    store.edit_many({"/new/one": "first body", "/new/two": "second body", "/about": "back again"})
    with serve_in_thread(store) as origin:
        answers = {path: httpx.get(origin.url + path, headers={"Host": "shop.example"}) for path in
                   ("/new/one", "/new/two", "/about")}
    assert {path: r.status_code for path, r in answers.items()} == {"/new/one": 200, "/new/two": 200, "/about": 200}
    assert "first body" in answers["/new/one"].text and "back again" in answers["/about"].text
    with pytest.raises(ValueError):
        store.edit_many({"no-slash": "x"})
