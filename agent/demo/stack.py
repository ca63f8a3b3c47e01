"""The whole local stack: demo origin (+ Redis app cache) <- Varnish <- nginx edge, on free loopback ports.

    stack = start_stack(Path("/tmp/demo"))
    stack.config_dict()        # a cachebot config for it (sites/layers/approval/limits/storage)
    stack.content.edit("/pricing", "Pro plan: $12/month")
    stack.stop()

``cachebot demo up`` starts it and calls ``stack.save_pids()``; another process finds it again with
``load_stack(workdir)`` (or stops it with ``stop_saved_stack(workdir)``). The state file is
``<workdir>/devstack.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from agent.demo.origin import APP_CACHE_META_PREFIX, APP_CACHE_PREFIX, ContentStore, OriginServer, serve_in_thread
from agent.demo.procs import Daemon, DaemonError, start_nginx, start_origin, start_redis, start_varnish

STATE_FILE = "devstack.json"  # the name from before the move, so `demo down` finds a stack an older cachebot started
DEFAULT_HOSTS = ("shop.example", "www.shop.example")
APP_CACHE_KEY_TEMPLATE = APP_CACHE_PREFIX + "{host}{path}"


@dataclass
class Stack:
    origin_url: str
    varnish_url: str
    nginx_url: str
    redis_url: str
    content: ContentStore
    workdir: Path
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    daemons: dict[str, Daemon] = field(default_factory=dict)  # origin (unless in a thread), redis (if ours), varnish, nginx
    origin_server: OriginServer | None = field(default=None, repr=False)  # set when the origin runs in a thread

    # -- parts ---------------------------------------------------------------------------------------------
    @property
    def varnish(self) -> Daemon:
        return self.daemons["varnish"]

    @property
    def nginx(self) -> Daemon:
        return self.daemons["nginx"]

    @property
    def redis(self) -> Daemon | None:
        """Our own redis-server, or None when the stack uses a Redis it was given."""
        return self.daemons.get("redis")

    @property
    def origin(self) -> Daemon | None:
        """The origin process, or None when it runs in a thread (see ``origin_server``)."""
        return self.daemons.get("origin")

    @property
    def host(self) -> str:
        return self.hosts[0]

    def app_cache_key(self, path: str, host: str | None = None) -> str:
        return APP_CACHE_KEY_TEMPLATE.format(host=(host or self.host).lower(), path=path)

    # -- cache control for tests and demos -----------------------------------------------------------------
    def redis_client(self):  # -> redis.Redis
        import redis  # ~0.2 s, and every `cachebot` command loads this module (for `demo`): only when used

        return redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def flush_app_cache(self) -> int:
        """Delete the origin's application-cache keys (only ``demo:*``, so a shared Redis keeps the rest)."""
        client = self.redis_client()
        try:
            keys = [k for prefix in (APP_CACHE_PREFIX, APP_CACHE_META_PREFIX) for k in client.scan_iter(f"{prefix}*")]
            return client.delete(*keys) if keys else 0
        finally:
            client.close()

    def clear_caches(self, *, restart_varnish: bool = False) -> None:
        """Empty every layer: Varnish (a ban on everything, or a restart, ~1 s), nginx (restart with an empty
        cache directory, ~0.1 s) and the origin's app-cache keys in Redis."""
        if restart_varnish:
            self.varnish.restart()
        else:
            self.ban_everything()
        self.nginx.restart()
        self.flush_app_cache()

    def ban_everything(self) -> None:
        """Invalidate every object in Varnish with ``BAN`` + ``X-Ban-Url: .`` (what a restart does, instantly)."""
        response = httpx.request("BAN", self.varnish_url + "/", headers={"X-Ban-Url": "."}, timeout=5)
        if response.status_code != 200:
            raise DaemonError(f"varnish refused to ban everything: {response.status_code} {response.text.strip()}")

    def reset_content(self) -> None:
        """Put the seed content back (edits are lost; the caches are not touched)."""
        ContentStore.create(self.content.path, overwrite=True)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything this stack started (outermost first); errors are collected and raised at the end."""
        errors = []
        for name in ("nginx", "varnish", "origin", "redis"):
            daemon = self.daemons.get(name)
            if daemon is not None:
                try:
                    daemon.stop()
                except DaemonError as exc:
                    errors.append(str(exc))
        if self.origin_server is not None:
            self.origin_server.stop()
            self.origin_server = None
        state = self.workdir / STATE_FILE
        if state.exists():
            state.unlink()
        if errors:
            raise DaemonError("; ".join(errors))

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- cachebot configuration ----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """A cachebot configuration (see agent/config.py) for this stack: one site, layers appcache -> varnish -> edge."""
        return {
            "sites": [{
                "name": "shop",
                "hosts": list(self.hosts),
                "origin": self.origin_url,
                "layers": ["appcache", "varnish", "edge"],
                "ignore_query_params": ["utm_*", "fbclid"],  # what the demo's Varnish and nginx leave out of their keys
                # the stylesheet is cached twice, gzipped and not: verify looks at both, nginx purges both
                "variants": [{"Accept-Encoding": "gzip"}],
                "dependencies": [
                    {
                        "match": "^/products/(?P<category>[^/]+)/[^/]+$",
                        "add": ["/products/{category}", "/", "/sitemap.xml"],
                        "why": "the category listing, home page and sitemap show this product",
                    },
                    {"match": "^/pricing$", "add": ["/"], "why": "the home page shows the prices"},
                ],
            }],
            "layers": [
                {"name": "appcache", "kind": "redis", "endpoint": self.redis_url,
                 "options": {"key_templates": [APP_CACHE_KEY_TEMPLATE]}},
                {"name": "varnish", "kind": "varnish", "endpoint": self.varnish_url, "options": {}},
                {"name": "edge", "kind": "nginx", "endpoint": self.nginx_url, "options": {"purge_path_prefix": "/purge"}},
            ],
            "approval": {"threshold": 20, "approvers": ["alice"], "allow_self_approval": False, "expiry_minutes": 60},
            "limits": {"max_urls_per_request": 1000},
            "storage": {"sqlite_path": str(self.workdir / "state.sqlite")},
        }

    def write_config(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write ``config_dict()`` as YAML (default ``<workdir>/cachebot.yaml``)."""
        target = Path(path) if path else self.workdir / "cachebot.yaml"
        target.write_text(yaml.safe_dump(self.config_dict(), sort_keys=False))
        return target

    # -- state shared between processes --------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "origin_url": self.origin_url, "varnish_url": self.varnish_url, "nginx_url": self.nginx_url,
            "redis_url": self.redis_url, "content": str(self.content.path), "workdir": str(self.workdir),
            "hosts": list(self.hosts), "origin_in_thread": self.origin_server is not None,
            "owner_pid": os.getpid(),
            "daemons": {name: daemon.to_dict() for name, daemon in self.daemons.items()},
        }

    def save_pids(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the state file (pids, ports, urls) so ``load_stack``/``stop_saved_stack`` work from another process.

        An origin running in a thread dies with this process; the state says so (``origin_in_thread``).
        """
        target = _state_path(path or self.workdir)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.to_state(), indent=2))
        os.replace(tmp, target)
        return target


def _state_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path / STATE_FILE if path.is_dir() else path


def load_stack(path: str | os.PathLike[str]) -> Stack:
    """The stack described by a state file (or a workdir holding ``devstack.json``), for another process."""
    state_path = _state_path(path)
    if not state_path.exists():
        raise FileNotFoundError(f"no demo stack state at {state_path} (start one with `cachebot demo up`)")
    state = json.loads(state_path.read_text())
    return Stack(
        origin_url=state["origin_url"], varnish_url=state["varnish_url"], nginx_url=state["nginx_url"],
        redis_url=state["redis_url"], content=ContentStore(state["content"]), workdir=Path(state["workdir"]),
        hosts=tuple(state.get("hosts") or DEFAULT_HOSTS),
        daemons={name: Daemon.from_dict(data) for name, data in state.get("daemons", {}).items()},
    )


def stop_saved_stack(path: str | os.PathLike[str]) -> bool:
    """Stop the stack recorded at ``path``; False when there was no state file (nothing to stop)."""
    try:
        stack = load_stack(path)
    except FileNotFoundError:
        return False
    stack.stop()
    state = _state_path(path)
    if state.exists():
        state.unlink()
    return True


def start_stack(
    workdir: Path,
    *,
    hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
    redis_url: str | None = None,
    in_thread: bool = False,
    reset_content: bool = True,
) -> Stack:
    """Start Redis (unless ``redis_url``), the origin, Varnish -> origin and nginx -> Varnish under ``workdir``.

    The origin runs as ``python -m agent.demo.origin`` (a separate process, like a real server) unless
    ``in_thread``. The content file ``<workdir>/content.json`` is (re)seeded unless ``reset_content`` is false.
    If any part fails to start, the parts already running are stopped and the error is raised.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    content = ContentStore.create(workdir / "content.json", overwrite=reset_content)
    daemons: dict[str, Daemon] = {}
    origin_server: OriginServer | None = None
    try:
        if redis_url is None:
            daemons["redis"] = start_redis(workdir)
            redis_url = daemons["redis"].url
        if in_thread:
            origin_server = serve_in_thread(content, redis_url=redis_url)
            origin_port, origin_url = origin_server.port, origin_server.url
        else:
            daemons["origin"] = start_origin(workdir, content.path, redis_url=redis_url)
            origin_port, origin_url = daemons["origin"].port, daemons["origin"].url
        daemons["varnish"] = start_varnish(workdir, origin_port)
        daemons["nginx"] = start_nginx(workdir, daemons["varnish"].port)
    except BaseException:
        for name in ("nginx", "varnish", "origin", "redis"):
            if name in daemons:
                try:
                    daemons[name].stop()
                except DaemonError:
                    pass
        if origin_server is not None:
            origin_server.stop()
        raise
    return Stack(
        origin_url=origin_url, varnish_url=daemons["varnish"].url, nginx_url=daemons["nginx"].url,
        redis_url=redis_url, content=content, workdir=workdir, hosts=tuple(hosts), daemons=daemons,
        origin_server=origin_server,
    )
