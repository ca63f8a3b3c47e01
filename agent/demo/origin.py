"""A small demo shop, the origin behind the local cache stack.

Run it as a server (``python -m agent.demo.origin --port N --content FILE [--redis URL]``) or in a thread
(:func:`serve_in_thread`). Content lives in a JSON file (:class:`ContentStore`) so another process can edit it.

Every 200 answer carries what a real CMS would send to its caches: ``Cache-Control: public, max-age=3600``, a
strong ``ETag`` (hash of the body), ``Last-Modified``, and the page's cache tags three ways (``xkey`` and
``Surrogate-Key`` space separated, ``Cache-Tag`` comma separated). ``X-Origin-Render`` counts the requests the
origin answered, so a test can tell whether a cache answered instead. Stylesheets and scripts are sent with
``Vary: Accept-Encoding``, gzipped (``Content-Encoding: gzip``, ETag ``"…-gzip"``) when the request accepts gzip:
the caches keep an identity and a gzip variant of them.

With ``--redis`` the origin keeps an *application* cache: the rendered body is stored at
``demo:page:<host><path>[?<query>]`` and served from there while the key exists, so an edit stays invisible, even at
the origin, until that key is deleted. That is the layer cachebot's ``redis`` backend purges.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import html
import json
import os
import re
import threading
import time
from contextlib import contextmanager
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

APP_CACHE_PREFIX = "demo:page:"
APP_CACHE_META_PREFIX = "demo:meta:"
CACHE_CONTROL = "public, max-age=3600"
# Assets the origin also sends gzipped (with Vary: Accept-Encoding), so the caches hold two variants of them.
COMPRESSIBLE = ("text/css", "application/javascript", "text/javascript")

SEED_CONTENT: dict[str, dict[str, Any]] = {
    "/": {"title": "Welcome", "body": "Welcome to the Demo Shop: shoes and hats since 2024."},
    "/pricing": {"title": "Pricing", "body": "Pro plan: $10/month. Free plan: $0/month."},
    "/about": {"title": "About us", "body": "We are a small shop that sells shoes and hats."},
    "/products/shoes/runner": {"title": "Runner", "body": "Light running shoe. Price: $80."},
    "/products/shoes/hiker": {"title": "Hiker", "body": "Waterproof hiking boot. Price: $120."},
    "/products/shoes/loafer": {"title": "Loafer", "body": "Leather loafer. Price: $95."},
    "/products/hats/beanie": {"title": "Beanie", "body": "Warm wool beanie. Price: $20."},
    "/products/hats/fedora": {"title": "Fedora", "body": "Classic felt fedora. Price: $45."},
    # what a shop also has: a product taken down (410 Gone), an old address that redirects, a stylesheet
    "/products/hats/bowler": {"title": "Bowler", "body": "Black bowler hat. Price: $60.", "gone": True},
    "/offers": {"title": "Offers", "body": "", "redirect": "/pricing"},
    "/static/shop.css": {"title": "shop.css", "body": "body { font-family: sans-serif; color: #222; }\n",
                         "content_type": "text/css; charset=utf-8"},
}

PRODUCT_PATH = re.compile(r"^/products/(?P<category>[a-z0-9-]+)/(?P<slug>[a-z0-9-]+)$")
LISTING_PATH = re.compile(r"^/products/(?P<category>[a-z0-9-]+)$")


class ContentStore:
    """The shop's content: a JSON file mapping page path -> {"title", "body", "updated"}.

    Products are the entries keyed ``/products/<category>/<slug>``; a category exists while it has a product.
    An entry marked ``"gone": true`` was taken down (the origin answers 410 Gone); one with ``"redirect": "/x"``
    moved (301 to /x); one with a ``"content_type"`` is an asset served as its body alone (a stylesheet).
    Writes are atomic (temp file + rename) under a lock file, so several processes can share the store.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, overwrite: bool = False) -> ContentStore:
        """A store at ``path`` holding the seed content (kept if the file exists and ``overwrite`` is false)."""
        store = cls(path)
        if overwrite or not store.path.exists():
            now = time.time()
            store._write({p: {**page, "updated": now} for p, page in SEED_CONTENT.items()})
        return store

    # -- reading -------------------------------------------------------------------------------------------
    def load(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"content store {self.path} does not exist (use ContentStore.create)") from None

    def get(self, page_path: str) -> dict[str, Any] | None:
        return self.load().get(page_path)

    def live(self) -> dict[str, dict[str, Any]]:
        """Entries the origin renders (neither taken down nor moved)."""
        return {p: page for p, page in self.load().items() if not retired(page)}

    def body(self, page_path: str) -> str:
        page = self.get(page_path)
        if page is None:
            raise KeyError(f"no page {page_path!r} in {self.path}")
        return page["body"]

    def products(self, category: str | None = None) -> dict[str, dict[str, Any]]:
        pages = self.live()
        found = {}
        for page_path, page in sorted(pages.items()):
            match = PRODUCT_PATH.match(page_path)
            if match and (category is None or match["category"] == category):
                found[page_path] = page
        return found

    def categories(self) -> list[str]:
        return sorted({PRODUCT_PATH.match(p)["category"] for p in self.products()})  # type: ignore[index]

    def paths(self) -> list[str]:
        """Every page the origin serves (with the listings and the XML documents)."""
        pages = [p for p in self.live() if not PRODUCT_PATH.match(p)]
        listings = [f"/products/{c}" for c in self.categories()]
        return sorted(set(pages) | set(listings) | set(self.products()) | {"/sitemap.xml", "/feed.xml"})

    # -- writing -------------------------------------------------------------------------------------------
    def edit(self, page_path: str, new_body: str, *, title: str | None = None) -> None:
        """Change (or add) a page's body; what the caches serve does not change until they are purged."""
        if not page_path.startswith("/"):
            raise ValueError(f"page path must start with '/': {page_path!r}")
        with self._locked():
            pages = self.load()
            page = pages.get(page_path) or {"title": title or page_path.rsplit("/", 1)[-1].title() or "Page"}
            page = {key: value for key, value in page.items() if key not in ("gone", "redirect")}  # back in place
            page = {**page, "body": new_body, "updated": time.time()}
            if title is not None:
                page["title"] = title
            pages[page_path] = page
            self._write(pages)

    def edit_many(self, bodies: dict[str, str]) -> None:
        """Change (or add) many pages in one write (``edit`` rewrites the whole file once per page)."""
        if bad := [p for p in bodies if not p.startswith("/")]:
            raise ValueError(f"page paths must start with '/': {bad[:3]!r}")
        now = time.time()
        with self._locked():
            pages = self.load()
            for page_path, body in bodies.items():
                page = pages.get(page_path) or {"title": page_path.rsplit("/", 1)[-1].title() or "Page"}
                page = {key: value for key, value in page.items() if key not in ("gone", "redirect")}
                pages[page_path] = {**page, "body": body, "updated": now}
            self._write(pages)

    def retire(self, page_path: str, *, redirect_to: str | None = None) -> None:
        """Take a page down: the origin answers 410 Gone, or 301 to ``redirect_to`` (the caches keep the old page
        until purged)."""
        with self._locked():
            pages = self.load()
            page = {**pages.get(page_path, {"title": page_path, "body": ""}), "updated": time.time()}
            page.pop("gone", None)
            page.pop("redirect", None)
            page.update({"redirect": redirect_to} if redirect_to else {"gone": True})
            pages[page_path] = page
            self._write(pages)

    def delete(self, page_path: str) -> None:
        with self._locked():
            pages = self.load()
            pages.pop(page_path, None)
            self._write(pages)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, pages: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(pages, indent=2, sort_keys=True))
        os.replace(tmp, self.path)


# -- rendering ---------------------------------------------------------------------------------------------
class Page:
    def __init__(self, body: str, content_type: str, tags: list[str], updated: float):
        self.body = body
        self.content_type = content_type
        self.tags = tags
        self.updated = updated


def retired(page: dict[str, Any]) -> bool:
    return bool(page.get("gone") or page.get("redirect"))


def product_tags(page_path: str) -> list[str]:
    match = PRODUCT_PATH.match(page_path)
    assert match
    return [f"product-{match['slug']}", f"category-{match['category']}"]


def page_tags(store: ContentStore, page_path: str) -> list[str] | None:
    """The cache tags of a page (None when the page does not exist)."""
    pages = store.live()
    if PRODUCT_PATH.match(page_path):
        return product_tags(page_path) if page_path in pages else None
    if match := LISTING_PATH.match(page_path):
        products = store.products(match["category"])
        if not products:
            return None
        return _unique([f"category-{match['category']}"] + [t for p in products for t in product_tags(p)])
    every_product = [t for p in store.products() for t in product_tags(p)]
    if page_path == "/":
        return _unique(["home", "pricing"] + every_product)
    if page_path == "/sitemap.xml":
        return _unique(["sitemap"] + every_product)
    if page_path == "/feed.xml":
        return _unique(["feed"] + every_product)
    if page_path in pages:
        return [page_path.strip("/").replace("/", "-") or "home"]
    return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def render(store: ContentStore, page_path: str, host: str) -> Page | None:
    """Render a page from the store, or None for a 404."""
    tags = page_tags(store, page_path)
    if tags is None:
        return None
    pages = store.live()
    newest = max((p.get("updated", 0) for p in pages.values()), default=time.time())
    base = f"http://{host}"
    if page_path == "/sitemap.xml":
        urls = "".join(f"  <url><loc>{html.escape(base + p)}</loc></url>\n" for p in store.paths() if p != "/sitemap.xml")
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{urls}</urlset>\n'
        return Page(body, "application/xml; charset=utf-8", tags, newest)
    if page_path == "/feed.xml":
        items = "".join(
            f"  <item><title>{html.escape(p['title'])}</title><link>{html.escape(base + path)}</link>"
            f"<description>{html.escape(p['body'])}</description></item>\n"
            for path, p in store.products().items()
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>\n'
            f"  <title>Demo Shop</title><link>{html.escape(base)}/</link>\n{items}</channel></rss>\n"
        )
        return Page(body, "application/rss+xml; charset=utf-8", tags, newest)
    if match := LISTING_PATH.match(page_path):
        products = store.products(match["category"])
        items = "".join(
            f'<li><a href="{path}">{html.escape(p["title"])}</a>: {html.escape(p["body"])}</li>\n'
            for path, p in products.items()
        )
        title = match["category"].title()
        updated = max(p.get("updated", 0) for p in products.values())
        return Page(_html(title, f"<ul>\n{items}</ul>", store), "text/html; charset=utf-8", tags, updated)
    page = pages[page_path]
    if page.get("content_type"):  # an asset: its body as it is
        return Page(page["body"], page["content_type"], tags, page.get("updated", 0))
    content = f"<p>{html.escape(page['body'])}</p>"
    updated = page.get("updated", 0)
    if page_path == "/":
        pricing = pages.get("/pricing")
        if pricing:
            content += f'\n<section id="prices"><h2>Prices</h2><p>{html.escape(pricing["body"])}</p></section>'
            updated = max(updated, pricing.get("updated", 0))
        listings = "".join(f'<li><a href="/products/{c}">{c.title()}</a></li>' for c in store.categories())
        content += f"\n<ul>{listings}</ul>"
        updated = max([updated] + [p.get("updated", 0) for p in store.products().values()])
    return Page(_html(page["title"], content, store), "text/html; charset=utf-8", tags, updated)


def _html(title: str, content: str, store: ContentStore) -> str:
    nav = " | ".join(f'<a href="{p}">{n}</a>' for p, n in [("/", "Home"), ("/pricing", "Pricing"), ("/about", "About")])
    return (
        f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)} - Demo Shop</title></head>\n"
        f"<body><nav>{nav}</nav>\n<h1>{html.escape(title)}</h1>\n{content}\n</body></html>\n"
    )


# -- serving -----------------------------------------------------------------------------------------------
class OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: ContentStore, redis_url: str | None = None):
        super().__init__(address, OriginHandler)
        self.store = store
        self.redis_url = redis_url
        self.redis = None
        if redis_url:
            import redis  # imported only when an app cache is configured

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.counter = 0
        self.counter_lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def next_count(self) -> int:
        with self.counter_lock:
            self.counter += 1
            return self.counter

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self.thread:
            self.thread.join(timeout=5)
        if self.redis is not None:
            self.redis.close()

    def __enter__(self) -> OriginServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OriginHandler(BaseHTTPRequestHandler):
    server: OriginServer
    protocol_version = "HTTP/1.1"
    server_version = "DemoOrigin/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if os.environ.get("DEMO_ORIGIN_LOG"):
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        count = self.server.next_count()
        target = urlsplit(self.path)
        # The app-cache key uses the request's path *with* its query string, like the redis layer's {path}
        # placeholder: /pricing?utm=x is its own entry (the "query-string variant" a purge can miss).
        key_path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        path = target.path or "/"
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        host = (self.headers.get("Host") or "localhost").lower()
        host = re.sub(r":\d+$", "", host.strip())
        try:
            page, app_cache = self._page(path, host, key_path)
        except Exception as exc:  # noqa: BLE001 - a demo server answers 500 with the reason
            self._plain(500, f"origin error: {exc}\n", count, send_body)
            return
        if page is None and retired(entry := self.server.store.get(path) or {}):  # unless the app cache holds it
            self._retired(entry, count, send_body)
            return
        if page is None:
            self._plain(404, f"not found: {path}\n", count, send_body)
            return
        data = page.body.encode()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        vary = {}
        if page.content_type.startswith(COMPRESSIBLE):  # a stylesheet or script: also sent gzipped, when asked
            vary = {"Vary": "Accept-Encoding"}
            if accepts_gzip(self.headers.get("Accept-Encoding", "")):
                data = gzip.compress(data, mtime=0)  # mtime 0: the same file gives the same bytes every time
                etag = etag[:-1] + '-gzip"'  # another representation, another strong ETag (as Apache does)
                vary["Content-Encoding"] = "gzip"
        headers = {
            **vary,
            "Content-Type": page.content_type,
            "Cache-Control": CACHE_CONTROL,
            "ETag": etag,
            "Last-Modified": formatdate(page.updated, usegmt=True),
            "xkey": " ".join(page.tags),
            "Surrogate-Key": " ".join(page.tags),
            "Cache-Tag": ",".join(page.tags),
            "X-Origin-Render": str(count),
            "X-App-Cache": app_cache,
        }
        if self._not_modified(etag, page.updated):
            self.send_response(304)
            for name, value in headers.items():
                if name != "Content-Type":
                    self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _not_modified(self, etag: str, updated: float) -> bool:
        if inm := self.headers.get("If-None-Match"):
            return etag in [t.strip().removeprefix("W/") for t in inm.split(",")] or inm.strip() == "*"
        if ims := self.headers.get("If-Modified-Since"):
            try:
                return int(updated) <= parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _page(self, path: str, host: str, key_path: str) -> tuple[Page | None, str]:
        """The page and how the app cache was used (HIT, MISS or OFF)."""
        store, redis = self.server.store, self.server.redis
        if redis is None:
            return render(store, path, host), "OFF"
        key = f"{APP_CACHE_PREFIX}{host}{key_path}"
        cached = redis.get(key)
        if cached is not None:
            tags = page_tags(store, path) or []
            meta = redis.get(f"{APP_CACHE_META_PREFIX}{host}{key_path}")
            meta_data = json.loads(meta) if meta else {}
            updated = float(meta_data.get("updated", time.time()))
            content_type = meta_data.get("content_type", _content_type(path))
            return Page(cached.decode(), content_type, meta_data.get("tags", tags), updated), "HIT"
        page = render(store, path, host)
        if page is not None:
            meta = {"updated": page.updated, "content_type": page.content_type, "tags": page.tags}
            pipe = redis.pipeline()
            pipe.set(key, page.body.encode())
            pipe.set(f"{APP_CACHE_META_PREFIX}{host}{key_path}", json.dumps(meta))
            pipe.execute()
        return page, "MISS"

    def _retired(self, entry: dict[str, Any], count: int, send_body: bool) -> None:
        """A page taken down (410) or moved (301): cacheable like any page, so a cache can hold the old one."""
        if entry.get("redirect"):
            self._plain(301, f"moved to {entry['redirect']}\n", count, send_body,
                        {"Location": entry["redirect"], "Cache-Control": CACHE_CONTROL})
        else:
            self._plain(410, "gone: this product was taken down\n", count, send_body)

    def _plain(self, status: int, text: str, count: int, send_body: bool,
               headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        headers = {"Cache-Control": "no-store", **(headers or {})}
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("X-Origin-Render", str(count))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)


def accepts_gzip(accept_encoding: str) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) without ``q=0``."""
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() in ("gzip", "*") and params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            return True
    return False


def _content_type(path: str) -> str:
    if path == "/feed.xml":
        return "application/rss+xml; charset=utf-8"
    if path.endswith(".xml"):
        return "application/xml; charset=utf-8"
    return "text/html; charset=utf-8"


def make_server(content: str | os.PathLike[str] | ContentStore, *, port: int = 0, host: str = "127.0.0.1",
                redis_url: str | None = None) -> OriginServer:
    store = content if isinstance(content, ContentStore) else ContentStore.create(content)
    return OriginServer((host, port), store, redis_url)


def serve_in_thread(content: str | os.PathLike[str] | ContentStore, *, port: int = 0, host: str = "127.0.0.1",
                    redis_url: str | None = None) -> OriginServer:
    """Start the origin in a daemon thread; ``.url``/``.port`` say where, ``.stop()`` ends it."""
    server = make_server(content, port=port, host=host, redis_url=redis_url)
    server.thread = threading.Thread(target=server.serve_forever, name=f"demo-origin:{server.port}", daemon=True)
    server.thread.start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cachebot demo origin (a small shop)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--content", required=True, help="JSON content file (created with seed content if missing)")
    parser.add_argument("--redis", default=None, help="redis:// URL of the application cache (optional)")
    args = parser.parse_args(argv)
    server = make_server(args.content, port=args.port, host=args.host, redis_url=args.redis)
    print(f"demo origin on {server.url} content={args.content} redis={args.redis or 'off'}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
