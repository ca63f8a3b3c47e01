"""``cachebot demo``: a local shop behind a Redis app cache, Varnish (xkey) and an nginx edge, to watch purges work.

``up`` starts the stack, writes ``.demo/cachebot.yaml``, warms every cache, then changes the price on
``/pricing`` so every layer is visibly stale; ``show`` prints what each layer serves; ``edit`` changes a page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from agent.demo.stack import Stack

# The stack (and httpx) is imported by the commands that use it: `cachebot --help` lists these commands too.

DEMO_DIR = Path(".demo")
demo_app = typer.Typer(help="A local demo site behind real caches.", no_args_is_help=True)
console = Console(highlight=False)

DirOption = Annotated[Path, typer.Option("--dir", help="where the demo keeps its state")]
WARM_PATHS = ("/", "/pricing", "/products/shoes", "/products/shoes/runner", "/sitemap.xml",
              "/products/hats/bowler", "/offers", "/static/shop.css", "/pricing?utm_source=newsletter")
VARIED_PATHS = ("/static/shop.css",)  # sent gzipped or not (Vary: Accept-Encoding): both variants get cached


@demo_app.command()
def up(directory: DirOption = DEMO_DIR) -> None:
    """Start the demo stack, warm the caches, and make /pricing stale."""
    from agent.demo.stack import start_stack, stop_saved_stack

    stop_saved_stack(directory)  # a leftover stack from an earlier `demo up` would hold the ports' state
    stack = start_stack(directory)
    stack.save_pids()
    config_path = stack.write_config(directory / "cachebot.yaml")
    # The bowler and /offers start as pages the caches store, then the shop takes one down and moves the other.
    stack.content.edit("/products/hats/bowler", "Black bowler hat. Price: $60.")
    stack.content.edit("/offers", "No offers at the moment.")
    warm(stack)
    stack.content.edit("/pricing", "Pro plan: $12/month. Free plan: $0/month.")
    stack.content.retire("/products/hats/bowler")
    stack.content.retire("/offers", redirect_to="/pricing")
    stack.content.edit("/static/shop.css", "body { font-family: sans-serif; color: #c00; }\n")
    console.print(f"Demo stack is up; config written to [cyan]{config_path}[/cyan].")
    console.print(
        "Every cache has just stored the shop's pages, and then the price on /pricing changed from $10 to $12.\n"
        "So every layer now serves the old price:"
    )
    show_page(stack, "/pricing")
    console.print(
        f"Try: [bold]is https://{stack.host}/pricing stale?[/bold]   then   "
        f"[bold]these still show the old price: https://{stack.host}/pricing[/bold]\n"
        f"Other terminals: [cyan]cachebot demo show /pricing[/cyan], "
        f"[cyan]cachebot demo edit /pricing 'Pro plan: $15/month'[/cyan], [cyan]cachebot demo down[/cyan].\n"
        f"Also stale in every cache: a product taken down (https://{stack.host}/products/hats/bowler, now 410), "
        f"an address that now redirects (https://{stack.host}/offers → /pricing), a changed stylesheet "
        f"(https://{stack.host}/static/shop.css, cached gzipped and not) and a marketing link "
        f"(https://{stack.host}/pricing?utm_source=newsletter)."
    )


@demo_app.command()
def down(directory: DirOption = DEMO_DIR) -> None:
    """Stop the demo stack."""
    from agent.demo.stack import stop_saved_stack

    console.print("Demo stack stopped." if stop_saved_stack(directory) else "No demo stack was running.")


@demo_app.command()
def edit(
    path: Annotated[str, typer.Argument(help="page path, e.g. /pricing")],
    text: Annotated[str, typer.Argument(help="the new body text")],
    directory: DirOption = DEMO_DIR,
) -> None:
    """Change a page at the origin's content store (the caches keep serving the old one until purged)."""
    stack = saved_stack(directory)
    if stack.content.get(path) is None:
        console.print(f"[red]No page {path}.[/red] Pages: {', '.join(stack.content.paths())}")
        raise typer.Exit(1)
    stack.content.edit(path, text)
    console.print(f"Changed {path}. The caches still hold the old version:")
    show_page(stack, path)


@demo_app.command()
def show(path: Annotated[str, typer.Argument(help="page path, e.g. /pricing")] = "/pricing",
         directory: DirOption = DEMO_DIR) -> None:
    """What the content store says, and what each layer serves, for one page."""
    show_page(saved_stack(directory), path)


def saved_stack(directory: Path) -> Stack:
    from agent.demo.stack import load_stack

    try:
        return load_stack(directory)
    except FileNotFoundError:
        console.print("No demo stack is running: start it with [cyan]cachebot demo up[/cyan] (or make demo).")
        raise typer.Exit(1) from None


def warm(stack: Stack) -> None:
    import httpx

    with httpx.Client(timeout=10) as client:
        for path in WARM_PATHS:
            for _ in range(2):  # the second request is the HIT that proves the page is cached
                client.get(stack.nginx_url + path, headers={"Host": stack.host})  # as browsers ask: gzip
                if path in VARIED_PATHS:  # and the identity variant too: each is a cache entry of its own
                    client.get(stack.nginx_url + path, headers={"Host": stack.host, "Accept-Encoding": "identity"})


def show_page(stack: Stack, path: str) -> None:
    import httpx

    table = Table(title=f"https://{stack.host}{path}")
    for column in ("where", "cache status", "says"):
        table.add_column(column)
    entry = stack.content.get(path.partition("?")[0]) or {}
    truth = ("taken down (410)" if entry.get("gone") else f"moves to {entry['redirect']} (301)"
             if entry.get("redirect") else headline(entry.get("body", "")))
    table.add_row("content store (truth)", "", truth)
    with httpx.Client(timeout=10) as client:
        for name, base, header in (("origin (via Redis app cache)", stack.origin_url, None),
                                   ("varnish", stack.varnish_url, "X-Cache"),
                                   ("nginx edge", stack.nginx_url, "X-Cache-Status")):
            try:
                response = client.get(base + path, headers={"Host": stack.host})
            except httpx.HTTPError as exc:
                table.add_row(name, "unreachable", type(exc).__name__)
                continue
            table.add_row(name, response.headers.get(header, "") if header else "", headline(response.text))
    console.print(table)


def headline(html: str) -> str:
    """The first price-like phrase of a page, or its first text, to show stale vs fresh at a glance."""
    text = re.sub(r"<[^>]+>", " ", html)
    match = re.search(r"[^.\n]*\$\d+[^.\n]*", text)
    return (match.group(0) if match else " ".join(text.split())[:60]).strip()
