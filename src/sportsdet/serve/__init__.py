"""`sportsdet serve`: the HTTP service and its web page (needs the `serve` extra).

`create_app(ServeConfig(...))` builds the FastAPI application; `sportsdet.cli.serve` runs it on
uvicorn. See `sportsdet.serve.app` for the API and its limits, `sportsdet.serve.batching` for
how concurrent requests share model calls.
"""

from sportsdet.serve.app import ServeConfig, check_bind, create_app

__all__ = ["ServeConfig", "check_bind", "create_app"]
