"""Configuration: valid files load, and every mistake is named by its key."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, load_config, parse_config


def minimal(**overrides) -> dict:
    config = {
        "sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["varnish"]}],
        "layers": [{"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:6081"}],
    }
    config.update(overrides)
    return config


def test_minimal_config_gets_safe_defaults():
    config = parse_config(minimal())
    assert config.approval.threshold == 20
    assert config.approval.allow_self_approval is False
    assert config.limits.max_urls_per_request == 1000
    assert config.limits.max_body_bytes == 8 * 1024 * 1024  # verify/check never hold more of a page
    assert config.limits.fetch_timeout_seconds == 30 and config.limits.rule_timeout_seconds == 0.1
    assert config.site_for_host("shop.example").name == "shop"


def test_secrets_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    data = minimal(layers=[{"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:6081",
                            "credentials": {"token": "${REDIS_PASSWORD}"}}])
    config = parse_config(data)
    assert config.layers[0].credentials["token"].get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)  # SecretStr keeps it out of logs


def test_missing_environment_variable_is_named(monkeypatch):
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    data = minimal(layers=[{"name": "varnish", "kind": "varnish", "endpoint": "${NOPE_TOKEN}"}])
    with pytest.raises(ConfigError, match=r"layers\[0\]\.endpoint: environment variable NOPE_TOKEN is not set"):
        parse_config(data)


def test_env_default_is_used(monkeypatch):
    monkeypatch.delenv("VARNISH_URL", raising=False)
    data = minimal(layers=[{"name": "varnish", "kind": "varnish", "endpoint": "${VARNISH_URL:-http://127.0.0.1:9}"}])
    assert parse_config(data).layers[0].endpoint == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layerz": []}, r"layerz: unknown key"),
        ({"layers": [{"name": "v", "kind": "squid", "endpoint": "http://x"}]}, r"layers\[0\]\.kind: unknown kind 'squid'"),
        ({"sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["edge"]}]},
         r"sites\[0\]\.layers: no layer named 'edge'"),
        ({"sites": [{"name": "shop", "hosts": ["https://shop.example/"], "layers": ["varnish"]}]},
         r"sites\.0\.hosts|sites\[0\]\.hosts: .*not a plain DNS host name"),
        ({"sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["varnish"],
                     "dependencies": [{"match": "([", "add": ["/"]}]}]},
         r"sites\[0\]\.dependencies\[0\]\.match: not a valid regular expression"),
        ({"approval": {"threshold": -1}}, r"approval\.threshold: Input should be greater than or equal to 0"),
        ({"limits": {"max_body_bytes": 10}}, r"limits\.max_body_bytes: Input should be greater than or equal to 1024"),
        ({"limits": {"fetch_timeout_seconds": 0}}, r"limits\.fetch_timeout_seconds: Input should be greater than 0"),
        ({"limits": {"rule_timeout_seconds": 60}}, r"limits\.rule_timeout_seconds: Input should be less than or equal"),
        ({"layers": [{"name": "varnish", "kind": "varnish"}]}, r"layers\[0\]\.endpoint: required"),
        ({"sites": []}, r"sites: List should have at least 1 item"),
    ],
)
def test_mistakes_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(minimal(**change))


def test_file_errors_are_plain(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("sites: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(scalar)


def test_config_path_from_environment(tmp_path, monkeypatch):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    monkeypatch.setenv("CACHEBOT_CONFIG", str(path))
    assert load_config().sites[0].name == "shop"


# --- unknown keys are named, with where they are and what was probably meant (issue 9, item 10) ------------

@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"sites": [{"name": "shop", "hostz": ["shop.example"], "hosts": ["shop.example"], "layers": ["varnish"]}]},
         "sites[0].hostz: unknown key; did you mean hosts?"),
        ({"approval": {"treshold": 3}}, "approval.treshold: unknown key; did you mean threshold?"),
        ({"llm": {"modle": "x"}}, "llm.modle: unknown key; did you mean model?"),
        ({"layers": [{"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:9",
                      "options": {"purge_methd": "BAN"}}]},
         "layers[0].options.purge_methd: unknown key; did you mean purge_method?"),
        ({"sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["varnish"],
                     "dependencies": [{"match": "/x", "add": ["/"], "resaon": "r"}]}]},
         "sites[0].dependencies[0].resaon: unknown key; known keys here: match, add, why"),
        ({"zzz": 1}, "zzz: unknown key; known keys here: sites, layers, approval, limits, storage, recovery, llm, digest"),
    ],
)
def test_an_unknown_key_is_named_with_where_it_is_and_what_was_meant(change, line):
    with pytest.raises(ConfigError) as error:
        parse_config(minimal(**change))
    message = str(error.value)
    assert f"\n  {line}" in message, message
    assert "Extra inputs are not permitted" not in message and "(top level)" not in message


def test_every_layer_option_problem_gets_its_own_line():
    data = minimal(layers=[{"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:9",
                            "options": {"purge_methd": "BAN", "xkey_headr": "xkey"}}])
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    lines = str(error.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["layers[0].options.purge_methd",
                                                                   "layers[0].options.xkey_headr"]


def test_the_consoles_address_makes_request_links_and_must_be_http():
    assert parse_config(minimal()).web.request_url("abc") is None  # no address: reports carry no link
    web = parse_config(minimal(web={"base_url": "https://cachebot.example.internal/ops/"})).web
    assert web.request_url("abc") == "https://cachebot.example.internal/ops/requests/abc"
    for bad in ("javascript:alert(1)", "cachebot.example.internal", "https://user@cachebot.example/"):
        with pytest.raises(ConfigError, match=r"web\.base_url: .*must be an http\(s\) address"):
            parse_config(minimal(web={"base_url": bad}))
    with pytest.raises(ConfigError, match="web.base_ur: unknown key; did you mean base_url"):
        parse_config(minimal(web={"base_ur": "https://x.example"}))
