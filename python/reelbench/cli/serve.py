"""``reelbench serve``: the local judging web app."""

from __future__ import annotations

import secrets

import click

from reelbench.cli.options import BadInput, db_option, open_db

__all__ = ["serve_command"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@click.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback requires a token.")  # fmt: skip
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on.")
@click.option("--token", default=None, metavar="TOKEN",
              help="Token every request must carry (?token=...); generated and printed when "
              "binding a non-loopback address without one.")  # fmt: skip
def serve_command(db_url: str, host: str, port: int, token: str | None) -> None:
    """Serve the judging web app: blind pairwise votes on an experiment's videos.

    Open the printed address: experiments with live progress and spend, each
    experiment's report, a compare page (2-4 variants of one item played in
    step), the judge page (give a name once, vote with the buttons or keys
    1-4 or the arrow keys) and the ratings. Videos are served only by id
    from the database. See docs/judging.md.
    """
    import uvicorn

    from reelbench.serve.app import create_app

    if host not in LOOPBACK and token is None:
        token = secrets.token_urlsafe(24)
    if token is not None and len(token) < 16:
        raise BadInput("--token must be at least 16 characters")
    db = open_db(db_url)
    db.engine.dispose()
    app = create_app(db.url, token=token)
    shown = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    click.echo(f"reelbench serve: open {shown}  (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
