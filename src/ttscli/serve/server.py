"""Running the server: uvicorn on a bound socket, the URL once ready, SIGTERM/Ctrl-C drain, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    """Everything `ttscli serve` takes."""

    host: str = "127.0.0.1"
    port: int = 8000
    voice: str | None = None
    device: str | None = None
    precision: str | None = None
    batch_size: int | None = None
    render_threads: int | None = None  # None: engine.plan_rendering decides
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_queue: int = 64
    max_chars: int = 4096
    timeout_seconds: float = 120.0
    wyoming: str | None = None  # tcp://HOST:PORT


def serve(options: ServeOptions, announce=print) -> int:
    """Serve until SIGTERM or Ctrl-C; the exit status (0 after a drain, 1 when the default
    voice cannot be used). `announce` receives the line giving the URL once it is ready."""
    import torch
    import uvicorn

    from .app import Settings, build_app
    from .engine import Engine, plan_rendering
    from .scheduler import Scheduler

    plan = plan_rendering(options.render_threads, torch.get_num_threads())
    torch.set_num_threads(plan.torch_threads)  # this process is the server's: so are its threads
    engine = Engine(options.voice, options.device, options.precision, options.batch_size)
    scheduler = Scheduler(engine, max_queue=options.max_queue, workers=plan.workers)
    settings = Settings(
        api_key=options.api_key,
        cors_origins=list(options.cors_origins),
        max_chars=options.max_chars,
        timeout_seconds=options.timeout_seconds,
    )
    app = build_app(scheduler, settings)
    sock = _bind(options.host, options.port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=int(options.timeout_seconds) + 5,
    )
    server = _draining_server(config)
    scheduler.start()
    try:
        return asyncio.run(_main(server, sock, scheduler, options, announce))
    finally:
        scheduler.stop()
        sock.close()


async def _main(server, sock: socket.socket, scheduler, options: ServeOptions, announce) -> int:
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    wyoming = None
    while not (scheduler.ready.is_set() and server.started):
        if scheduler.failure or serving.done():  # the voice failed, or a signal came first
            server.should_exit = True
            await serving
            if scheduler.failure:
                print(f"Error: the voice cannot be used: {scheduler.failure}", file=sys.stderr)
                return 1
            return 0
        await asyncio.sleep(0.02)
    if options.wyoming:
        from .wyoming_server import start_wyoming

        wyoming = await start_wyoming(options.wyoming, scheduler, options)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    lines = [f"ttscli serve: voice {scheduler.engine.default_voice} ready at http://{shown}:{port}"]
    if wyoming is not None:
        lines.append(f"ttscli serve: Wyoming at {wyoming.uri}")
    for line in lines:
        announce(line)
    sys.stdout.flush()
    try:
        await serving
    finally:
        if wyoming is not None:
            await wyoming.stop()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port, shown in the printed URL)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ..errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _draining_server(config):
    """uvicorn's server, except that SIGTERM/SIGINT stop it gracefully without being raised
    again afterwards (stock uvicorn re-raises them, so the process would not exit 0)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return DrainingServer(config)
