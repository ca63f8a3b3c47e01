"""``cachebot web``: the read-only console (``agent/web/``), served by uvicorn.

On loopback (the default) anyone on this machine may read it; any other address serves the audit trail to a
network, so it needs a token and refuses to start without one. Starlette, Jinja2 and uvicorn are imported when
the command runs, not when ``cachebot`` starts.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.markup import escape

from agent.cli.options import ConfigOption, config_or_exit
from agent.cli.output import console

TOKEN_ENV = "CACHEBOT_WEB_TOKEN"


def web(
    host: Annotated[str, typer.Option(help="address to listen on; anything but loopback needs a token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8377,
    token: Annotated[Optional[str], typer.Option(help=f"required to read the console (default ${TOKEN_ENV})",
                                                 show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """The read-only web console: requests, one request's path and evidence, approvals waiting, stats."""
    from agent.web.security import is_loopback
    from agent.words import web_listening, web_needs_token

    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        console.print(f"[red]Cannot start:[/red] {escape(web_needs_token(host))}")
        raise typer.Exit(2)
    settings = config_or_exit(config)

    import uvicorn

    from agent.state import checkpoint_serializer
    from agent.storage import Storage
    from agent.web.app import Console, create_app

    storage = Storage.open(settings, serde=checkpoint_serializer())
    try:
        app = create_app(Console(settings, storage), token=token)
        shown = f"[{host}]" if ":" in host else host
        console.print(escape(web_listening(f"http://{shown}:{port}/", bool(token))), soft_wrap=True)
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    finally:
        storage.close()
