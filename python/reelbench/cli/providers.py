"""``reelbench providers``: what each provider needs (keys) and offers (params, seeds, prices)."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from reelbench.cli.options import BadInput, console, json_option

__all__ = ["providers_command"]


def _default(value: object) -> str:
    return "-" if value is None else json.dumps(value)


@click.command("providers")
@click.argument("name", required=False)
@json_option
def providers_command(name: str | None, as_json: bool) -> None:
    """List the video providers: API keys, params and defaults, seeds and prices.

    Shows every built-in and installed plugin provider (or only NAME): the
    environment variables holding its API key and whether each is set on
    this machine (never the value), whether the same seed gives the same
    video, its parameters with their defaults, and its price table (USD per
    second of video, with the date the price was read). A spec overrides
    prices with [[prices]] entries.
    """
    from reelbench.providers.describe import describe_all, describe_provider
    from reelbench.providers.registry import available_providers

    if name is not None and name not in available_providers():
        known = ", ".join(available_providers())
        raise BadInput(f"unknown provider {name!r}; known providers: {known}")
    infos = [describe_provider(name)] if name is not None else describe_all()
    if as_json:
        click.echo(json.dumps({"providers": [i.to_json() for i in infos]}, indent=2))
        return
    out = console()
    for index, info in enumerate(infos):
        if index:
            out.print()
        origin = "built-in" if info.builtin else "plugin"
        title = f"[bold]{escape(info.name)}[/] ({origin}) {escape(info.summary)}"
        out.print(title, highlight=False)
        if info.error:
            out.print(f"  [red]{escape(info.error)}[/]", highlight=False)
            continue
        if info.key_env:
            keys = ", ".join(
                f"{k} ({'set' if info.keys_set[k] else 'not set'})" for k in info.key_env
            )
            ready = "" if info.key_ready else " [red]- no key: export one before submitting[/]"
            one = "any one of " if len(info.key_env) > 1 else ""
            out.print(f"  API key: {one}{escape(keys)}{ready}", highlight=False)
        else:
            out.print("  API key: none needed", highlight=False)
        seed = "honoured" if info.honours_seed else "not honoured (the API takes no seed)"
        out.print(f"  seed: {seed}", highlight=False)
        if info.params:
            table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2))
            for column in ("param", "default", "meaning"):
                table.add_column(column)
            for key, (default, text) in info.params.items():
                table.add_row(key, escape(_default(default)), escape(text))
            out.print(table)
        if info.prices:
            table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2))
            for column in ("model", "USD/second", "read on"):
                table.add_column(column)
            for price in info.prices:
                table.add_row(
                    price.model or "(any)", f"{price.usd_per_second:.2f}", price.read_on or "-"
                )
            out.print(table)
        else:
            out.print(
                "  prices: none built in (add " + escape("[[prices]]") + " to the spec)",
                highlight=False,
            )
