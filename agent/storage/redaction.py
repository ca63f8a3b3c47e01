"""Secret redaction: no configuration secret reaches the audit trail (or an error shown to a person).

``secrets_of(config)`` collects every secret value the configuration holds (layer credentials, secret-looking
options and headers, passwords in endpoints and the database URL, the LLM API key); ``Redactor`` replaces each
of them, and any password in a URL's userinfo, with ``[redacted]``.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable
from urllib.parse import urlsplit

from pydantic import SecretStr

from agent.storage.database import ENV_VAR

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words; such "secrets" protect nothing anyway
_SECRETISH = re.compile(r"(token|secret|password|passwd|key|auth|credential|signature|cookie)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)([^\s@/]+)@", re.IGNORECASE)


def secrets_of(config: Any) -> set[str]:
    """Every secret value the configuration holds (``AppConfig``), plus the database URL's password."""
    found: set[str] = set()
    if config is None:
        return found

    def reveal(value: Any) -> str | None:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return value if isinstance(value, str) else None

    def secretish(values: Any, named: bool = False) -> None:
        if isinstance(values, dict):
            for key, value in values.items():
                secretish(value, named or bool(_SECRETISH.search(str(key))))
        elif isinstance(values, (list, tuple)):
            for value in values:
                secretish(value, named)
        elif (text := reveal(values)) and (named or isinstance(values, SecretStr)):
            # "Bearer abc…": the credential part too, so it is caught wherever it shows up alone
            found.add(text)
            found.update(part for part in text.split() if len(part) >= 8)

    for layer in getattr(config, "layers", []):
        for value in layer.credentials.values():
            found.add(value.get_secret_value())
        secretish(layer.options)
        if layer.endpoint and (password := _password_in(layer.endpoint)):
            found.add(password)
    llm = getattr(config, "llm", None)
    if llm is not None and llm.api_key is not None:
        found.add(llm.api_key.get_secret_value())
    if os.environ.get("OPENAI_API_KEY"):
        found.add(os.environ["OPENAI_API_KEY"])
    storage = getattr(config, "storage", None)
    for url in (os.environ.get(ENV_VAR), getattr(storage, "database_url", None)):
        if url and (password := _password_in(url)):
            found.add(password)
    return {secret for secret in found if secret and len(secret) >= MIN_SECRET_LENGTH}


def _password_in(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        # longest first, so a secret that contains another is replaced whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)

    def __call__(self, text: str | None) -> str:
        if not text:
            return text or ""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
