"""Cache backends as plug-ins, found by kind. Adding one is adding a module here and a line to ``_MODULES``.

This is the registry and nothing more: it imports no backend (each loads its client library only when a config
names it) and nothing else of cachebot's, so ``agent.config`` can look kinds and their ``Options`` models up
here while it validates a file, and the backends can import ``agent.config`` without an import cycle.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing these here would import agent.config back while it loads
    from agent.config import LayerConfig
    from agent.layers.base import CacheLayer

# kind -> "module:Class", imported on first use so a backend's client library loads only when configured.
_MODULES = {
    "varnish": "agent.layers.varnish:VarnishLayer",
    "nginx": "agent.layers.nginx:NginxLayer",
    "redis": "agent.layers.redis:RedisLayer",
    "cloudflare": "agent.layers.cloudflare:CloudflareLayer",
    "fastly": "agent.layers.fastly:FastlyLayer",
    "webhook": "agent.layers.webhook:WebhookLayer",
    "memcached": "agent.layers.memcached:MemcachedLayer",
    "cloudfront": "agent.layers.cloudfront:CloudFrontLayer",
    "akamai": "agent.layers.akamai:AkamaiLayer",
}


def layer_kinds() -> list[str]:
    return sorted(_MODULES)


def layer_class(kind: str) -> type[CacheLayer]:
    module_name, class_name = _MODULES[kind].split(":")
    return getattr(import_module(module_name), class_name)


def build_layer(config: LayerConfig) -> CacheLayer:
    return layer_class(config.kind)(config)
