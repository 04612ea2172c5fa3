"""CLI verb: `sportsdet serve` (the HTTP service and web page; needs the `serve` extra)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import typer

from sportsdet.cli.app import (
    app,
    check_abstain_options,
    err_console,
    min_score_option,
    no_abstain_option,
    number_from,
    seconds_from,
)
from sportsdet.errors import InterruptSaid
from sportsdet.imageio import MAX_DECODE_PIXELS

SERVE_EXTRA_HINT = "the service needs the serve extra: pip install 'sportsdet[serve]'"


@app.command("serve")
def serve_command(
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model bundle folder, a run folder, or an exported .onnx file. Default: the built-in model.",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on. Anything but loopback needs --api-key."
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="SPORTSDET_API_KEY",
        help="Key every API call must send (Authorization: Bearer KEY or X-API-Key). Required to bind "
        "anything but a loopback address; health probes and the page itself stay open. Prefer the "
        "environment variable: command lines are visible to other users.",
        show_envvar=True,
    ),
    allow_urls: bool = typer.Option(
        False, "--allow-urls", help="Let clients send image URLs for the server to download (http(s) only)."
    ),
    allow_private_urls: bool = typer.Option(
        False,
        "--allow-private-urls",
        help="With --allow-urls: also fetch from loopback, private and link-local addresses "
        "(refused by default: a client could reach this machine's or network's internal services).",
    ),
    allow_url_networks: list[str] = typer.Option(
        [],
        "--allow-url-network",
        metavar="CIDR",
        help="With --allow-urls: one private network (or address) to fetch from all the same, e.g. a "
        "trusted internal image server 10.0.5.7 or 10.0.5.0/24; repeat for several.",
    ),
    max_batch: int | None = typer.Option(
        None,
        "--max-batch",
        min=1,
        help="Most images per model call. Default: the backend's fastest batch, as in predict "
        "(onnxruntime: 2 per single-threaded run, one run per CPU at a time).",
    ),
    max_wait_ms: float = typer.Option(
        0.0,
        "--max-wait-ms",
        # and under --request-timeout (checked below): a longer wait 504s every request
        callback=number_from(0, 10_000, "milliseconds"),
        help="How long a free model lane waits for more images to batch. Default 0: it takes what is "
        "queued (batches grow by themselves while the lanes are busy, and a lone request waits for nobody).",
    ),
    max_queue: int = typer.Option(
        64,
        "--max-queue",
        min=1,
        help="Most images in flight over all requests; beyond it requests get 429 with Retry-After.",
    ),
    max_images: int = typer.Option(16, "--max-images", min=1, help="Most images per request."),
    max_upload_mb: float = typer.Option(  # inf was an OverflowError traceback
        32.0, "--max-upload-mb", callback=number_from(0.001, 1024 * 1024, "MB"),
        help="Largest request body, MB.",
    ),
    max_pixels: int = typer.Option(
        MAX_DECODE_PIXELS, "--max-pixels", min=1, help="Largest image, in pixels (checked before decoding)."
    ),
    request_timeout: float = typer.Option(
        30.0, "--request-timeout", callback=seconds_from(0.1),
        help="Seconds a request may take in all (504 beyond).",
    ),
    upload_idle_timeout: float = typer.Option(
        10.0,
        "--upload-idle-timeout",
        callback=seconds_from(0.1),
        help="Seconds an upload may send nothing before it is refused (408): stalled uploads would hold "
        "the server's upload budget.",
    ),
    url_timeout: float = typer.Option(
        10.0, "--url-timeout", callback=seconds_from(0.1),
        help="Seconds allowed for one URL download, redirects included.",
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads for the model. Default: all CPUs this process may use."
    ),
    int8: bool = typer.Option(False, "--int8", help="Use the bundle's INT8 model (model.int8.onnx)."),
    max_connections: int = typer.Option(
        512,
        "--max-connections",
        min=1,
        help="Most open connections; beyond it uvicorn answers 503 (a backstop against connection floods).",
    ),
    graceful_timeout: float = typer.Option(
        30.0, "--graceful-timeout", callback=seconds_from(0),
        help="On SIGTERM/Ctrl-C, seconds to finish requests in flight.",
    ),
    min_score: float | None = min_score_option(),
    no_abstain: bool = no_abstain_option(),
) -> None:
    """Run the HTTP service and web page: POST /v1/predict, GET /v1/model, /docs, / in a browser."""
    from sportsdet.errors import SportsdetError

    try:
        import uvicorn

        from sportsdet.serve.app import (
            ServeConfig,
            check_bind,
            create_app,
            make_predictor,
            url_networks,
            usable_api_key,
        )
    except ImportError as exc:
        raise SportsdetError(f"{SERVE_EXTRA_HINT} ({exc})") from None

    check_abstain_options(no_abstain, min_score)
    api_key = usable_api_key(api_key)
    if host.startswith("[") and host.endswith("]"):  # '[::1]', as a URL writes it: shown as [[::1]]
        host = host[1:-1]
    check_bind(host, api_key)
    if max_wait_ms / 1000 >= request_timeout:  # every request would time out waiting for its batch
        raise SportsdetError(
            f"--max-wait-ms {max_wait_ms:g} is as long as --request-timeout {request_timeout:g} s: every "
            "request would get 504; keep the wait to a few milliseconds"
        )
    networks = url_networks(allow_url_networks, allow_urls)
    config = ServeConfig(
        model=model,
        api_key=api_key or None,
        allow_urls=allow_urls,
        allow_private_urls=allow_private_urls,
        url_allowed_networks=networks,
        url_timeout=url_timeout,
        max_request_bytes=int(max_upload_mb * 1024 * 1024),
        max_images=max_images,
        max_pixels=max_pixels,
        request_timeout=request_timeout,
        upload_idle_timeout=upload_idle_timeout,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_in_flight=max(max_queue, max_images),
        threads=threads,
        int8=int8,
        abstain=not no_abstain,
        min_score=min_score,
    )
    predictor = make_predictor(config)  # a bad --model is one error line before anything listens
    application = create_app(config, predictor)
    # Bound here, before the "listening" line: a port in use is one error line, not a line saying
    # the service is up followed by uvicorn's own failure; and port 0 learns which port it got.
    shown_host = f"[{host}]" if ":" in host else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        # Only a port taken or reserved is the port's fault (not an unknown host or foreign address).
        taken = exc.errno in (errno.EADDRINUSE, errno.EACCES) and port
        hint = "; choose another --port (0 picks a free one)" if taken else ""
        raise SportsdetError(f"cannot listen on {shown_host}:{port}: {exc.strerror or exc}{hint}") from None
    port, sockets = listening.getsockname()[1], [listening]
    err_console.print(
        f"sportsdet serve: model {application.state.service.model_id()} on http://{shown_host}:{port}/ "
        f"(API docs at /docs{', API key required' if api_key else ''}); Ctrl-C to stop",
        highlight=False,
        soft_wrap=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=graceful_timeout,
            limit_concurrency=max_connections,
            server_header=False,
        )
    )
    try:
        server.run(sockets=sockets)  # SIGTERM / Ctrl-C: stop accepting, finish requests in flight, then stop
    except KeyboardInterrupt:  # uvicorn raises the signal again once it has stopped
        # Not the file commands' "no file is left half written; run the same command again to finish".
        err_console.print("sportsdet serve: stopped", highlight=False)
        raise InterruptSaid from None
