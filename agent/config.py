"""cachebot's configuration: one YAML file, validated by pydantic, with ``${ENV}`` interpolation for secrets.

Errors name the key and say what is wrong (``layers[1].endpoint: ...``) so an operator can fix the file
without reading code.

A layer's ``options`` are checked against its backend's own ``Options`` model, looked up by kind in the registry
(``agent.layers``). That registry imports nothing of cachebot's and no backend until a kind is looked up, so this
import is the one place the configuration reaches up to the layers: the backends import ``LayerConfig`` from
here, and ``pyproject.toml``'s import contracts name this import as the deliberate exception.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from agent.layers import layer_class, layer_kinds

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
HOST_PATTERN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayerConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: str
    endpoint: str | None = Field(default=None, description="where purges are sent (http://host:port, redis://…)")
    credentials: dict[str, SecretStr] = {}
    options: dict[str, Any] = {}
    max_batch: int = Field(default=50, ge=1, le=10_000)
    concurrency: int = Field(default=8, ge=1, le=256)
    retries: int = Field(default=3, ge=0, le=10)
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    rate_limit_requests: int | None = Field(
        default=None, ge=1, description="token bucket: at most this many API requests per rate_limit_period_seconds"
    )
    rate_limit_period_seconds: float = Field(default=1.0, gt=0)


class DependencyRule(Strict):
    """When a purged path matches ``match``, also purge ``add`` (templates filled from named groups).

    Rules run with the ``regex`` package (``agent.mapping.dependents``), which takes a time limit per match; they
    are compiled here with that same engine so a pattern that loads is one that runs.
    """

    match: str
    add: list[str]
    why: str = ""

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            regex.compile(value)
        except regex.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("add")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for template in value:
            if not template.startswith("/"):
                raise ValueError(f"{template!r} must be a path starting with '/'")
        return value


class SiteConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    hosts: list[str] = Field(min_length=1)
    origin: str | None = Field(default=None, description="the origin server, fetched directly to verify freshness")
    layers: list[str] = Field(min_length=1, description="layer names, from the origin outwards")
    dependencies: list[DependencyRule] = []
    discover_tags: bool = Field(default=True, description="read xkey/Surrogate-Key/Cache-Tag from the origin")
    tag_prefix: str | None = Field(
        default=None, min_length=1,
        description="only tags starting with this are purged by tag; needed for tag purges on a layer another site "
                    "shares (xkey, surrogate keys and cache tags are global to the layer)",
    )
    broad_tags: list[str] = Field(
        default_factory=list,
        description="tags (or shell patterns like category-*) that clear many pages: never used to purge a page",
    )
    broad_tag_pages: int = Field(
        default=20, ge=1, description="a tag advertised by more than this many of the pages looked at is broad too"
    )
    variants: list[dict[str, str]] = Field(
        default_factory=list,
        description="header sets a cache may keep a page apart by (e.g. {Accept-Encoding: gzip}, {User-Agent: "
                    "mobile}): verification looks at each too, and names a variant left stale",
    )
    ignore_query_params: list[str] = Field(
        default_factory=list,
        description="query parameters the caches leave out of their key (names or shell patterns like utm_*, "
                    "fbclid): dropped from a pasted URL when it is screened, so the purge hits the key the cache "
                    "uses; the reply says which were dropped",
    )

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        for variant in value:
            if not variant:
                raise ValueError("a variant needs at least one header, such as {Accept-Encoding: gzip}")
            for name, header in variant.items():
                if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name) or name.lower() == "host":
                    raise ValueError(f"{name!r} is not a header a variant can set")
                if any(c in header for c in "\r\n\0"):
                    raise ValueError(f"the value of {name} must be one line")
        return value

    @field_validator("ignore_query_params")
    @classmethod
    def _ignore_query_params(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or any(c in pattern for c in "&=?# "):
                raise ValueError(f"{pattern!r} is not a query parameter name or pattern (such as utm_* or fbclid)")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        hosts = [h.strip().lower().rstrip(".") for h in value]
        for host in hosts:
            if not HOST_PATTERN.match(host):
                raise ValueError(f"{host!r} is not a plain DNS host name (no scheme, port, path or wildcard)")
        return hosts


class ApprovalConfig(Strict):
    threshold: int = Field(default=20, ge=0, description="plans with more purges than this need approval")
    approvers: list[str] = Field(default_factory=list, description="user ids (or names) allowed to approve")
    approver_groups: list[str] = Field(default_factory=list, description="Slack user group ids allowed to approve")
    allow_self_approval: bool = False
    expiry_minutes: float = Field(default=60, gt=0)
    channel: str | None = Field(
        default=None, description="a channel (Slack id) where every approval request is also posted, linking to "
                                  "its thread; a decision there updates every copy",
    )
    dm_approvers: bool = Field(
        default=False, description="also send every approval request to each user in approvers by direct message",
    )
    prefix_min_depth: int | None = Field(
        default=None, ge=1,
        description="a wildcard purge whose prefix has at least this many whole path segments (/blog/2024/* has 2) "
                    "runs without approval; unset (the default): every wildcard purge needs approval",
    )


class LimitsConfig(Strict):
    max_urls_per_request: int = Field(default=1000, ge=1, le=100_000)
    deadline_seconds: float = Field(
        default=300, gt=0, description="one request's purges and their verification (or one check), start to end"
    )
    # 65,536 is where the HTTP client gives up on a URL; browsers and CDNs stop well before.
    max_url_length: int = Field(default=8192, ge=256, le=65_536, description="longer URLs are refused, with a reason")
    max_message_chars: int = Field(
        default=500_000, ge=1_000, le=10_000_000, description="a longer message is refused whole, with a reason"
    )
    max_tags_per_page: int = Field(
        default=256, ge=1, le=10_000, description="a page advertising more cache tags is purged by URL, not by tag"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, le=1024**3,
        description="verify/check hash at most this much of a page; beyond it they compare the first "
                    "max_body_bytes plus ETag/Last-Modified/Content-Length, and say so",
    )
    fetch_timeout_seconds: float = Field(
        default=30, gt=0, le=3600,
        description="one verify/check fetch, connect to last byte; never beyond what is left of deadline_seconds",
    )
    rule_timeout_seconds: float = Field(
        default=0.1, gt=0, le=10,
        description="one dependency rule on one path; a rule that takes longer is skipped for the request, said "
                    "in the plan",
    )
    max_rule_path_chars: int = Field(
        default=2048, ge=1, le=65_536, description="dependency rules are not run on longer paths (said in the plan)"
    )


class StorageConfig(Strict):
    sqlite_path: str = ".cachebot/state.sqlite"
    database_url: str | None = Field(
        default=None,
        description="sqlite:///FILE or postgresql://...; $CACHEBOT_DATABASE_URL wins (agent/storage/database.py)",
    )
    retention_days: float = Field(default=90, gt=0, description="audit rows older than this are deleted on start")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite|postgres|postgresql)(\+[a-z0-9]+)?://", value):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class RecoveryConfig(Strict):
    """Leases, takeover and housekeeping (``agent/service/sweeper.py``): every live process sweeps on an interval."""

    sweep_seconds: float = Field(
        default=15, gt=0, le=3600, description="how often each running cachebot looks for runs to take over and "
                                               "does its housekeeping",
    )
    lease_seconds: float = Field(
        default=45, gt=0, le=3600, description="a run whose holder has not beaten its heartbeat for this long is "
                                               "taken over (the heartbeat beats every third of it)",
    )
    keep_seconds: float = Field(
        default=86_400, ge=3600, description="claims and finished leases are kept this long (at least an hour, so "
                                             "Slack's retries are still recognised), then pruned",
    )
    max_takeovers: int = Field(
        default=3, ge=1, le=100, description="a request picked up again this many times is reported stopped",
    )


class LLMConfig(Strict):
    """An OpenAI-compatible chat model for understanding requests (``agent/llm.py``); rules are used without it."""

    model: str = "gpt-4o-mini"
    base_url: str | None = Field(default=None, description="any OpenAI-compatible server (default: OPENAI_BASE_URL)")
    api_key: SecretStr | None = Field(default=None, description="default: OPENAI_API_KEY")
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    max_retries: int = Field(default=1, ge=0, le=10)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DigestConfig(Strict):
    """A weekly usage digest posted to Slack (``cachebot digest --post``; ``cachebot slack`` posts it on time)."""

    channel: str = Field(min_length=1, description="Slack channel id to post to")
    weekday: str = Field(default="mon", description="mon … sun (UTC)")
    hour: int = Field(default=9, ge=0, le=23, description="hour of the day, UTC")
    days: float = Field(default=7, gt=0, description="the period the digest covers")

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        day = value.strip().lower()[:3]
        if day not in WEEKDAYS:
            raise ValueError(f"{value!r} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")
        return day


class AppConfig(Strict):
    sites: list[SiteConfig] = Field(min_length=1)
    layers: list[LayerConfig] = Field(min_length=1)
    approval: ApprovalConfig = ApprovalConfig()
    limits: LimitsConfig = LimitsConfig()
    storage: StorageConfig = StorageConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    llm: LLMConfig | None = Field(default=None, description="understand requests with a language model")
    digest: DigestConfig | None = Field(default=None, description="weekly usage digest in Slack")

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        layer_names = [layer.name for layer in self.layers]
        _no_duplicates("layers", layer_names)
        _no_duplicates("sites", [site.name for site in self.sites])
        _no_duplicates("hosts", [host for site in self.sites for host in site.hosts])
        for index, layer in enumerate(self.layers):
            if layer.kind not in layer_kinds():
                raise ValueError(
                    f"layers[{index}].kind: unknown kind {layer.kind!r}; known kinds: {', '.join(layer_kinds())}"
                )
            validate_layer_options(index, layer)
        for index, site in enumerate(self.sites):
            for name in site.layers:
                if name not in layer_names:
                    raise ValueError(f"sites[{index}].layers: no layer named {name!r} (layers: {', '.join(layer_names)})")
        self._tag_prefixes_apart()
        return self

    def _tag_prefixes_apart(self) -> None:
        """Sites sharing a layer must not share a tag namespace: one's prefix may not start another's."""
        for index, site in enumerate(self.sites):
            for other in self.sites[index + 1 :]:
                if not (site.tag_prefix and other.tag_prefix and set(site.layers) & set(other.layers)):
                    continue
                if site.tag_prefix.startswith(other.tag_prefix) or other.tag_prefix.startswith(site.tag_prefix):
                    raise ValueError(
                        f"sites[{index}].tag_prefix: {site.tag_prefix!r} overlaps {other.tag_prefix!r} of site "
                        f"{other.name!r}, which shares a layer with it: a tag purge of one would clear the other's pages"
                    )

    def sites_on_layer(self, layer_name: str) -> list[SiteConfig]:
        return [site for site in self.sites if layer_name in site.layers]

    def site_for_host(self, host: str) -> SiteConfig | None:
        for site in self.sites:
            if host in site.hosts:
                return site
        return None

    def site_named(self, name: str) -> SiteConfig | None:
        return next((site for site in self.sites if site.name == name), None)

    def layer_named(self, name: str) -> LayerConfig:
        return next(layer for layer in self.layers if layer.name == name)

    @property
    def all_hosts(self) -> set[str]:
        return {host for site in self.sites for host in site.hosts}


def _no_duplicates(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what}: {name!r} appears more than once")
        seen.add(name)


def interpolate_env(value: Any, path: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string; a missing variable is an error naming it."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set")

    return ENV_PATTERN.sub(substitute, value)


def format_validation_error(error: ValidationError) -> str:
    return "invalid configuration:\n  " + "\n  ".join(validation_problems(error, AppConfig))


def validate_layer_options(index: int, config: LayerConfig) -> None:
    """Check a layer's ``options`` against its backend's own model, naming the key on error."""
    backend = layer_class(config.kind)
    try:
        backend.Options.model_validate(config.options)
    except ValidationError as exc:
        raise ValueError("\n".join(validation_problems(exc, backend.Options, f"layers[{index}].options"))) from None
    backend.check_config(index, config)


def validation_problems(error: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per problem, each naming where it is (``sites[0].hostz``) and what is wrong in words; an unknown
    key says which known key it most likely meant. ``prefix`` is where ``model`` sits in the file."""
    lines = []
    for item in error.errors():
        location = prefix
        for part in item["loc"]:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = unknown_key_message(str(item["loc"][-1]), _model_at(model, item["loc"][:-1]))
        elif item["type"] == "missing":
            message = "required key is missing"
        if not location and message and re.match(r"^[\w.\[\]]+: ", message):
            lines.extend(message.splitlines())  # a check across keys that already says where (layers[1].options…)
        else:
            lines.append(f"{location or '(top level)'}: {message}")
    return lines


def unknown_key_message(key: str, model: type[BaseModel] | None) -> str:
    """"unknown key; did you mean hosts?" (or the keys that are allowed there, when none is close)."""
    if model is None:
        return "unknown key (check the spelling)"
    known = list(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    return f"unknown key; known keys here: {', '.join(known)}"


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model found at ``loc`` inside ``model`` (through lists and optional fields), or None."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the item's model is the list's argument, found below
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        current = _unwrap(fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """list[X] / X | None / Optional[X] -> X, when X is a model."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        for inner in typing.get_args(arg):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def parse_config(data: Any) -> AppConfig:
    if not isinstance(data, dict):
        raise ConfigError("invalid configuration: the file must be a YAML mapping with sites and layers")
    try:
        return AppConfig.model_validate(interpolate_env(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Load from ``path``, else ``$CACHEBOT_CONFIG``, else ``./cachebot.yaml``."""
    source = Path(path or os.environ.get("CACHEBOT_CONFIG") or "cachebot.yaml")
    if not source.is_file():
        raise ConfigError(f"config file {source} not found (pass --config or set CACHEBOT_CONFIG)")
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_config(data)
