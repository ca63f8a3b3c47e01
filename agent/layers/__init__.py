"""Cache backends as plug-ins. Adding one is adding a module here and a line to ``_MODULES``."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
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


def validate_layer_options(index: int, config: LayerConfig) -> None:
    """Check a layer's ``options`` against its backend's own model, naming the key on error."""
    from agent.config import validation_problems

    cls = layer_class(config.kind)
    try:
        cls.Options.model_validate(config.options)
    except ValidationError as exc:
        raise ValueError("\n".join(validation_problems(exc, cls.Options, f"layers[{index}].options"))) from None
    cls.check_config(index, config)


def build_layer(config: LayerConfig) -> CacheLayer:
    return layer_class(config.kind)(config)
