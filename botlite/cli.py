"""``python -m botlite <command>``. ``main(argv)`` returns the exit code.

Exit codes: 0 done, 1 failed while running, 2 bad input or configuration (one
line on stderr).
"""
from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading

from botlite import __version__
from botlite.settings import SETTINGS_BY_NAME, SettingsError, load_settings

logger = logging.getLogger("botlite")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError("%s: %s (see %s --help)" % (self.prog, message, self.prog))


def _add_setting_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        setting = SETTINGS_BY_NAME[name]
        default = "" if setting.default is None else " [default: %s]" % setting.default
        parser.add_argument(setting.flag, dest=name, default=None, metavar=name.upper(),
                            help="%s (env %s)%s" % (setting.help, setting.env, default))


def _settings(args: argparse.Namespace):
    flags = {name: getattr(args, name) for name in SETTINGS_BY_NAME if hasattr(args, name)}
    return load_settings(flags)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Huey logs every task at INFO; that costs throughput and drowns the log.
    noisy = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("huey", "waitress"):
        logging.getLogger(name).setLevel(noisy)


def _open_app(args):
    from botlite.app import Botlite

    settings = _settings(args)
    _configure_logging(settings.log_level)
    return Botlite.open(settings)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return "[%s]" % host if ":" in host else host


def _raise_stop(signum, frame):
    raise KeyboardInterrupt


def cmd_serve(args) -> int:
    import waitress

    from botlite.web.app import create_app

    app = _open_app(args)
    settings = app.settings
    try:
        server = waitress.create_server(
            create_app(app), host=settings.host, port=settings.port, threads=8,
            ident="botlite", clear_untrusted_proxy_headers=True,
            max_request_body_size=(settings.max_upload_mb + 1) * 1024 * 1024)
    except OSError as exc:
        app.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError("port %d on %s is already in use: stop the other program or "
                           "pick another port with --port" % (settings.port, settings.host))
        raise CliError("cannot listen on %s:%d: %s" % (settings.host, settings.port,
                                                       exc.strerror or exc))
    runtime = None
    if not args.no_worker and settings.workers > 0:
        runtime = app.runtime()
        runtime.start()
    signal.signal(signal.SIGTERM, _raise_stop)
    url = "http://%s:%d/?token=%s" % (_url_host(settings.host), int(server.effective_port),
                                       app.token)
    print("botlite %s is ready: %s" % (__version__, url), flush=True)
    logger.info("serving on %s:%d with %s", settings.host, int(server.effective_port),
                "%d worker thread(s)" % settings.workers if runtime else "no workers")
    try:
        server.run()  # returns after SIGINT/SIGTERM closed the listening socket
        logger.info("stopping: no new requests; waiting up to %ss for running tasks",
                    settings.shutdown_timeout)
        server.task_dispatcher.shutdown(timeout=5)
        if runtime is not None:
            runtime.stop()
    except KeyboardInterrupt:
        logger.warning("second stop signal: exiting without waiting")
        return 1
    finally:
        app.close()
    return 0


def cmd_worker(args) -> int:
    app = _open_app(args)
    runtime = app.runtime(app.settings.workers)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runtime.start()
    print("botlite %s worker is running with %d thread(s) (Ctrl-C to stop)"
          % (__version__, runtime.workers), flush=True)
    try:
        while not stop.wait(1.0):
            pass
        signal.signal(signal.SIGINT, _raise_stop)
        signal.signal(signal.SIGTERM, _raise_stop)
        runtime.stop()
    except KeyboardInterrupt:
        logger.warning("second stop signal: exiting without waiting")
        return 1
    finally:
        app.close()
    return 0


def cmd_token(args) -> int:
    from botlite.auth import admin_token
    from botlite.settings import ensure_data_dir

    settings = _settings(args)
    ensure_data_dir(settings)
    print(admin_token(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m botlite",
                     description="botlite: a chatbot builder and its task runner in one "
                                 "process, on SQLite.")
    parser.add_argument("--version", action="version", version="botlite " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    serve = commands.add_parser(
        "serve", help="web API, pages, task workers and scheduler in one process",
        description="Serve the web API and pages, and run task workers and the scheduler "
                    "in this process. Prints the dashboard URL with the admin token once "
                    "it answers. SIGINT/SIGTERM stop it gracefully.")
    _add_setting_flags(serve, "host", "port", "data_dir", "workers", "database_url",
                       "broker_url", "shutdown_timeout", "log_level")
    serve.add_argument("--no-worker", action="store_true",
                       help="serve HTTP only; tasks run in `python -m botlite worker` processes")
    serve.set_defaults(run=cmd_serve)

    worker = commands.add_parser(
        "worker", help="task workers and scheduler only (no web server)",
        description="Run task workers and the scheduler, for deployments with several "
                    "worker processes or machines.")
    _add_setting_flags(worker, "workers", "data_dir", "database_url", "broker_url",
                       "shutdown_timeout", "log_level")
    worker.set_defaults(run=cmd_worker)

    token = commands.add_parser(
        "token", help="print the admin token",
        description="Print the admin token (BOTLITE_ADMIN_TOKEN, or the one generated "
                    "into <data dir>/admin_token).")
    _add_setting_flags(token, "data_dir")
    token.set_defaults(run=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    from botlite.app import StartupError

    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return int(exc.code or 0)
        return args.run(args)
    except (CliError, SettingsError, StartupError) as exc:
        print("botlite: error: %s" % exc, file=sys.stderr)
        return 2
