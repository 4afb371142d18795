"""``python -m botlite <command>``. ``main(argv)`` returns the exit code.

Exit codes: 0 done, 1 failed while running, 2 bad input or configuration, or a
disk that is full or takes no writes (one line on stderr).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import signal
import sys
import threading
import time

from botlite import __version__
from botlite.settings import SETTINGS_BY_NAME, SettingsError, load_settings
from botlite.wording import counted

logger = logging.getLogger("botlite")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError("%s: %s (see %s --help)" % (self.prog, message, self.prog))

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but arguments nobody took are reported by the parser of
        the command (and action) they were given to, with its --help."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self
            for dest in ("command", "action"):
                chosen = [a for a in parser._actions
                          if isinstance(a, argparse._SubParsersAction) and a.dest == dest]
                if not chosen or getattr(parsed, dest, None) not in chosen[0].choices:
                    break
                parser = chosen[0].choices[getattr(parsed, dest)]
            misplaced = [e for e in extras if e.split("=", 1)[0] in
                         parser._option_string_actions]
            if misplaced and parser is not self:  # "tasks --json list"
                parser.error("%s goes after %r: %s %s" % (
                    misplaced[0], parser.prog.split()[-1], parser.prog, misplaced[0]))
            parser.error("unrecognized arguments: %s" % " ".join(extras))
        return parsed


def _add_setting_flags(parser: argparse.ArgumentParser, *names: str,
                       unset: object = None) -> None:
    """``unset``: the value when the flag is not given; argparse.SUPPRESS on an
    action's parser (``tasks list``) leaves the one its command's parser read."""
    for name in names:
        setting = SETTINGS_BY_NAME[name]
        default = "" if setting.default is None else " [default: %s]" % setting.default
        parser.add_argument(setting.flag, dest=name, default=unset, metavar=name.upper(),
                            help="%s (env %s)%s" % (setting.help, setting.env, default))


_STORAGE = ("data_dir", "database_url", "broker_url")


def _add_storage_flags(command: argparse.ArgumentParser,
                       actions: argparse._SubParsersAction) -> None:
    """The storage flags of a command with actions (``tasks``, ``schedule``), taken
    before the action (``tasks --data-dir X list``) or after it (``tasks list
    --data-dir X``, which wins when both are given)."""
    _add_setting_flags(command, *_STORAGE)
    for sub in actions.choices.values():
        _add_setting_flags(sub, *_STORAGE, unset=argparse.SUPPRESS)


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


def _open_app(args, quiet: bool = False):
    from botlite.app import Botlite

    settings = _settings(args)
    _configure_logging("WARNING" if quiet and settings.sources["log_level"] == "default"
                       else settings.log_level)
    return Botlite.open(settings)


def _say_retrieval() -> None:
    """Load the embedding model now (not on the first question) and say once
    when semantic search is off, and how to turn it on."""
    from botlite.knowledge import embedding

    message = embedding.startup_message()
    if message:
        logger.info(message)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return "[%s]" % host if ":" in host else host


class _StopSignals:
    """SIGINT/SIGTERM handling for serve and worker.

    The first signal calls ``on_first`` (a graceful stop). A second one, at any
    moment after, stops the waiting: running tasks are released for a re-run and
    the exit code is 1. But a SIGTERM within `DUPLICATE_WINDOW` seconds of the
    first SIGTERM is that same stop delivered twice (`timeout` and some
    supervisors signal the process and then its whole group) and is ignored.
    """

    DUPLICATE_WINDOW = 1.0

    def __init__(self, on_first, clock=time.monotonic) -> None:
        self.on_first = on_first
        self.clock = clock
        self.stopping = False
        self.forced = False
        self.first: tuple[int, float] | None = None  # (signal, when)

    def install(self) -> None:
        # Explicitly, also for SIGINT: a shell starts background jobs with it ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        now = self.clock()
        if self.stopping:
            if self.first is not None and signum == self.first[0] == signal.SIGTERM and \
                    now - self.first[1] < self.DUPLICATE_WINDOW:
                return  # the same stop, delivered to the process and to its group
            self.forced = True
            raise KeyboardInterrupt
        self.stopping = True
        self.first = (signum, now)
        self.on_first()

    def stop_runtime(self, runtime) -> int:
        if runtime is not None:
            try:
                runtime.stop()
            except KeyboardInterrupt:
                self.forced = True
                runtime.abandon()
        if self.forced:
            logger.warning("second stop signal: stopped without waiting for running tasks")
        return 1 if self.forced else 0


def _interrupt():
    raise KeyboardInterrupt  # ends waitress's loop, which closes the server


class _DeferredApp:
    """Lets the port be bound (and a busy port reported) before anything is opened."""
    target = None

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


WEB_THREADS = 8
"""waitress threads per web process."""


CONNECTION_LIMIT = 1000
"""Open connections per web process (waitress's default, 100, was a slowloris's
whole budget); polled with poll(), not select() (limited to 1,024 descriptors).
At most the process's file-descriptor limit less `DESCRIPTOR_RESERVE`."""
DESCRIPTOR_RESERVE = 200
"""File descriptors kept for what is not a client connection: databases and their
WAL files, uploads, task children, outbound fetches."""


def _connection_limit() -> int:
    """`CONNECTION_LIMIT`, raising the soft RLIMIT_NOFILE towards the hard one
    first (systemd's soft default is 1,024: with 1,000 connections accept() ran
    out of descriptors and logged a traceback per try), and never above what the
    limit leaves after `DESCRIPTOR_RESERVE`."""
    try:
        import resource
    except ImportError:  # not on this platform: waitress's own accounting only
        return CONNECTION_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CONNECTION_LIMIT + DESCRIPTOR_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    limit = max(10, min(CONNECTION_LIMIT, soft - DESCRIPTOR_RESERVE))
    if limit < CONNECTION_LIMIT:
        logger.warning("serving at most %d connections: the file-descriptor limit is %d "
                       "(raise it with ulimit -n or LimitNOFILE=)", limit, soft)
    return limit


def _server_options(settings) -> dict:
    from botlite.web.app import MAINTENANCE_INTERVAL

    options = dict(threads=WEB_THREADS, ident="botlite", clear_untrusted_proxy_headers=True,
                   max_request_body_size=(settings.max_upload_mb + 1) * 1024 * 1024,
                   connection_limit=_connection_limit(), asyncore_use_poll=True,
                   channel_timeout=60, cleanup_interval=MAINTENANCE_INTERVAL)
    if settings.trusted_proxy:
        options.update(trusted_proxy=settings.trusted_proxy, trusted_proxy_count=1,
                       trusted_proxy_headers={"x-forwarded-proto", "x-forwarded-for",
                                              "x-forwarded-host", "x-forwarded-port"})
    return options


def _create_server(application, **options):
    """waitress.create_server, answering what it cannot read with JSON errors."""
    import waitress

    from botlite.web.app import guard_connections, json_server_errors

    server = waitress.create_server(application, **options)
    json_server_errors(server)
    guard_connections(server, per_address=not options.get("trusted_proxy"))
    return server


def _running_lock(settings) -> contextlib.ExitStack:
    """The shared running lock on each SQLite database (see backup.running),
    held until the returned stack is closed; restore refuses while it is held."""
    from botlite import backup
    from botlite.settings import ensure_data_dir

    ensure_data_dir(settings)
    stack = contextlib.ExitStack()
    stack.enter_context(backup.running(settings.database_url, settings.broker_url))
    return stack


def cmd_serve(args) -> int:
    from waitress.task import ThreadedTaskDispatcher

    from botlite.app import Botlite
    from botlite.web.app import create_app

    settings = _settings(args)
    _configure_logging(settings.log_level)
    deferred = _DeferredApp()
    # The HTTP threads start after the extra web processes are forked: a
    # process forked with threads running keeps only the forking one.
    dispatcher = ThreadedTaskDispatcher()
    try:
        server = _create_server(
            deferred, host=settings.host, port=settings.port, _dispatcher=dispatcher,
            **_server_options(settings))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError("port %d on %s is already in use: stop the other program or "
                           "pick another port with --port" % (settings.port, settings.host))
        raise CliError("cannot listen on %s:%d: %s" % (settings.host, settings.port,
                                                       exc.strerror or exc))
    except ValueError:
        raise CliError("cannot listen on %s:%d: not an address of this machine"
                       % (settings.host, settings.port))
    # Taken before the extra web processes are forked: they inherit the locked
    # descriptor, so the lock is held until the last of them exits.
    running = _running_lock(settings)
    web = _WebProcesses(server.socket, settings)
    try:
        web.start(settings.web_processes - 1)
    except BaseException:
        running.close()
        server.close()
        raise
    dispatcher.set_thread_count(WEB_THREADS)
    try:
        app = Botlite.open(settings)
    except BaseException:
        web.stop()
        running.close()
        server.close()
        raise
    _say_retrieval()
    deferred.target = create_app(app)
    web.release()
    signals = _StopSignals(_interrupt)
    signals.install()
    runtime = None
    try:
        if not args.no_worker and settings.workers > 0:
            runtime = app.runtime()
            runtime.start()
        port = int(server.effective_port)
        where = "http://%s:%d/" % (_url_host(settings.host), port)
        if settings.admin_token:  # the operator's own: never printed (logs keep lines)
            print("botlite %s is ready: %s (log in with BOTLITE_ADMIN_TOKEN)"
                  % (__version__, where), flush=True)
        else:
            print("botlite %s is ready: %s?token=%s" % (__version__, where, app.token),
                  flush=True)
        logger.info("serving on %s:%d with %s in %d web process(es)", settings.host, port,
                    "%d worker thread(s)" % settings.workers if runtime else "no workers",
                    settings.web_processes)
        server.run()  # returns once a signal closed the server
        logger.info("stopping: no new requests%s", "; up to %ss for running tasks"
                    % settings.shutdown_timeout if runtime is not None else "")
        web.signal_stop()
        return signals.stop_runtime(runtime)
    except KeyboardInterrupt:  # a signal before the server ran
        return signals.stop_runtime(runtime)
    finally:
        web.stop()
        app.close()
        running.close()


class _WebProcesses:
    """The extra web processes of ``serve --web-processes N``: forked children
    that accept on the same listening socket, each with its own app (database
    connections, chat turn log) and no task workers. A stop signal reaches
    them from the parent (SIGTERM) or from the terminal (SIGINT); each answers
    what it accepted, writes its queued chat turns and exits. One that dies is
    logged; the others go on serving."""

    def __init__(self, sock, settings) -> None:
        self.sock, self.settings = sock, settings
        self.watchers: dict[int, threading.Thread] = {}
        self.stopping = False
        self.go: int | None = None

    def start(self, count: int) -> None:
        """Fork ``count`` processes; they open the app once `release` is called
        (after this process has migrated the database: two processes migrating
        a new SQLite file at once would find it locked)."""
        if not count:
            return
        wait, self.go = os.pipe()
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                os.close(self.go)
                os._exit(_serve_forked(self.sock, self.settings, os.getppid(), wait))
            watcher = threading.Thread(target=self._watch, args=(pid,), daemon=True,
                                       name="botlite-web-%d" % pid)
            watcher.start()
            self.watchers[pid] = watcher
        os.close(wait)

    def release(self) -> None:
        if self.go is not None:
            os.write(self.go, b"x" * len(self.watchers))
            os.close(self.go)
            self.go = None

    def _watch(self, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        if not self.stopping:
            logger.error("web process %d exited (status %d); the others go on serving",
                         pid, os.waitstatus_to_exitcode(status))

    def signal_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.go is not None:  # never released: they exit on the closed pipe
            os.close(self.go)
            self.go = None
        for pid, watcher in self.watchers.items():
            if watcher.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def stop(self) -> None:
        """Stop them (SIGTERM) and wait; one still running after the shutdown
        timeout (plus 5 s) is killed."""
        self.signal_stop()
        deadline = time.monotonic() + self.settings.shutdown_timeout + 5
        for pid, watcher in self.watchers.items():
            watcher.join(max(0.0, deadline - time.monotonic()))
            if watcher.is_alive():
                logger.error("web process %d did not stop in time; killing it", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                watcher.join(5)


def _serve_forked(sock, settings, parent: int, wait: int) -> int:
    """The body of an extra web process; returns its exit code."""
    from botlite.app import Botlite
    from botlite.web.app import create_app

    def stop(signum, frame):
        for each in (signal.SIGINT, signal.SIGTERM):  # one stop; the parent may kill
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        if not os.read(wait, 1):
            return 0  # the parent could not start
        os.close(wait)
        deferred = _DeferredApp()
        server = _create_server(deferred, sockets=[sock], **_server_options(settings))
        app = Botlite.open(settings)
        from botlite.knowledge import embedding
        embedding.current()  # loaded now, not by the first question (the first process says why not)
    except KeyboardInterrupt:
        return 0
    except Exception:
        logger.exception("web process %d could not start", os.getpid())
        return 1

    def orphaned():  # the parent was killed: stop like on SIGTERM
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=orphaned, daemon=True).start()
    try:
        deferred.target = create_app(app)
        server.run()  # returns on SIGINT/SIGTERM
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        app.close()


def _lanes(value: str | None):
    if not value:
        return None
    lanes = [lane.strip() for lane in value.split(",") if lane.strip()]
    if not lanes:
        raise CliError("--queues needs queue names separated by commas")
    return lanes


def cmd_worker(args) -> int:
    lanes = _lanes(args.queues)
    settings = _settings(args)
    if settings.workers < 1:
        raise CliError("worker needs at least 1 worker thread (--workers)")
    running = _running_lock(settings)
    try:
        app = _open_app(args)
    except BaseException:
        running.close()
        raise
    unknown = [lane for lane in lanes or () if lane not in app.runner.lane_names()]
    if unknown:
        known = ", ".join(app.runner.lane_names())
        try:
            app.close()
        finally:
            running.close()
        raise CliError("--queues: no queue named %s (queues: %s)"
                       % (", ".join(map(repr, unknown)), known))
    _say_retrieval()
    runtime = app.runtime(app.settings.workers, lanes=lanes)
    stop = threading.Event()
    signals = _StopSignals(stop.set)
    signals.install()
    runtime.start()
    print("botlite %s worker is running with %d thread(s) on %s (Ctrl-C to stop)"
          % (__version__, runtime.workers, ",".join(lanes) if lanes else "all queues"),
          flush=True)
    try:
        while not stop.wait(1.0):
            pass
        logger.info("stopping: up to %ss for running tasks", app.settings.shutdown_timeout)
        return signals.stop_runtime(runtime)
    finally:
        app.close()
        running.close()


def cmd_token(args) -> int:
    import os

    from botlite.auth import admin_token

    settings = _settings(args)
    if not settings.admin_token and not os.path.exists(settings.admin_token_path):
        # A token made up here would open nothing: the server has another one.
        raise CliError("no admin token in %s: botlite has not run with this data directory "
                       "(start `python -m botlite serve` with it first, or pass the server's "
                       "--data-dir; a server given BOTLITE_ADMIN_TOKEN uses that one)"
                       % os.path.abspath(settings.data_dir))
    print(admin_token(settings))
    return 0


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _app_action(args, module_name: str, action, render=_print_json) -> int:
    """Open the app, run ``action(botlite.<module_name>, runner)``, print what it
    returns; an API error becomes one line and exit code 2."""
    import importlib

    from botlite.errors import BotliteError

    module = importlib.import_module("botlite." + module_name)
    app = _open_app(args, quiet=True)
    try:
        with app.database.connection_context():
            render(action(module, app.runner))
    except BotliteError as exc:
        raise CliError(exc.message) from None
    finally:
        app.close()
    return 0


def _task_action(args, action, render=_print_json) -> int:
    return _app_action(args, "task_control", action, render)


def _print_task_table(tasks) -> None:
    if not tasks:
        print("no tasks")
    for t in tasks:
        print("%-36s  %-8s  %-26s  %-13s  %s" % (t["task_id"], t["status"], t["name"],
                                                 t["queue"], t["enqueued_at"] or ""))


def cmd_tasks_list(args) -> int:
    return _task_action(
        args, lambda tc, runner: tc.list_tasks(runner, args.status, args.name, args.limit),
        render=_print_json if getattr(args, "json", False) else _print_task_table)


def cmd_tasks_show(args) -> int:
    return _task_action(args, lambda tc, runner: tc.show(runner, args.task_id))


def cmd_tasks_revoke(args) -> int:
    return _task_action(args, lambda tc, runner: tc.revoke(runner, args.task_id))


def cmd_tasks_retry(args) -> int:
    return _task_action(args, lambda tc, runner: tc.retry(runner, args.task_id))


def cmd_tasks_purge(args) -> int:
    return _task_action(args, lambda tc, runner: tc.purge(runner, args.queue))


def cmd_queues(args) -> int:
    return _task_action(args, lambda tc, runner: runner.queues())


def _progress_bar(source) -> str:
    """The bar, the counts, the status and, while a run waits to be tried again, why."""
    done, total = source.progress_done or 0, source.progress_total
    status = source.status
    if status == "processing" and source.error:
        status += ": " + source.error
    if total:
        filled = int(30 * min(done, total) / total)
        return "[%s%s] %d/%d %s" % ("#" * filled, "." * (30 - filled), done, total, status)
    return "[%s] %d %s" % ("." * 30, done, status)


def cmd_ingest(args) -> int:
    import os
    import time

    from botlite import ingest
    from botlite.errors import BotliteError
    from botlite.models import Source
    from botlite.runner import HEARTBEAT_MAX_AGE

    app = _open_app(args, quiet=True)
    runtime = None
    try:
        target = args.target
        try:
            if target.lower().startswith(("http://", "https://")):
                options = {"url": target}
                if args.max_pages is not None:
                    options["max_pages"] = args.max_pages
                if args.max_depth is not None:
                    options["max_depth"] = args.max_depth
                source, duplicate = ingest.add_website(app, args.bot, options)
            else:
                if not os.path.isfile(target):
                    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", target):
                        raise CliError("%s: only http:// and https:// URLs can be crawled"
                                       % target)
                    if os.path.isdir(target):
                        raise CliError("%s is a directory: ingest takes one file (or "
                                       "URL) at a time" % target)
                    raise CliError("no such file: %s" % target)
                with open(target, "rb") as handle:
                    source, duplicate = ingest.add_file(app, args.bot, os.path.basename(target),
                                                        handle)
        except BotliteError as exc:
            raise CliError(exc.message) from None
        print("source %s: %s" % (source.id, "already known (duplicate)" if duplicate
                                 else "queued as task %s" % source.task_id), flush=True)
        if args.no_wait:
            return 0
        if not app.runner.storage.workers(HEARTBEAT_MAX_AGE):
            runtime = app.runtime(1, schedule=False)  # nobody else will run it: do it here
            runtime.start()
        last = None
        while True:
            with app.database.connection_context():
                source = Source.get_by_id(source.id)
            line = _progress_bar(source)
            if line != last and sys.stderr.isatty():
                # blanks over the end of a longer line before (a reason gone)
                print("\r" + line.ljust(len(last or "")), end="", file=sys.stderr, flush=True)
            last = line
            if source.status in ("ready", "failed"):
                break
            if not ingest.task_active(app, source):  # revoked, purged or lost
                with app.database.connection_context():
                    source = Source.get_by_id(source.id)
                if source.status not in ("ready", "failed"):
                    state = app.runner.storage.get_state(source.task_id) or {}
                    source.status = "failed"
                    source.error = state.get("error") or "its task is no longer queued"
                    break
            time.sleep(0.2)  # polling the source's state for the progress bar
        if sys.stderr.isatty():
            print(file=sys.stderr)
        if source.status == "failed":
            print("botlite: %s failed: %s" % (source.title or target, source.error),
                  file=sys.stderr)
            return 1
        print("ready: %s: %s%s" % (source.title, counted(source.chunk_count, "chunk"),
                                   " from " + counted(source.page_count, "page")
                                   if source.kind == "website" else ""))
        return 0
    except KeyboardInterrupt:
        return 1
    finally:
        if runtime is not None:
            runtime.stop()
        app.close()


def _print_reply(answer: dict) -> None:
    print(answer["reply"])
    print("  [%s, %s, confidence %.2f]" % (answer["answer_source"], answer["intent"],
                                          answer["confidence"]))
    for number, source in enumerate(answer["sources"], 1):
        where = source.get("url") or source.get("title") or source["source_id"]
        print("  [%d] %s%s" % (number, source.get("title") or "", " - " + where
                               if where != source.get("title") else ""))


def cmd_chat(args) -> int:
    from botlite.chat import service
    from botlite.errors import BotliteError

    app = _open_app(args, quiet=True)
    session = None
    try:
        messages = [" ".join(args.message)] if args.message else None
        while True:
            if messages is not None:
                if not messages:
                    return 0
                text = messages.pop()
            else:
                try:
                    text = input("you> ")
                except EOFError:
                    print()
                    return 0
                if text.strip() in ("/quit", "/exit"):
                    if not sys.stdin.isatty():
                        print()  # a terminal echoed the Enter; a pipe did not
                    return 0
                if not text.strip():
                    continue
            try:
                with app.database.connection_context():
                    answer = service.chat(app, {"message": text, "session_id": session},
                                          bot_id=args.bot)
            except BotliteError as exc:
                raise CliError(exc.message) from None
            session = answer["session_id"]
            _print_reply(answer)
    except KeyboardInterrupt:
        print()
        return 0
    finally:
        app.close()


def _schedule_action(args, action, render=_print_json) -> int:
    return _app_action(args, "schedule", action, render)


def cmd_vectors_status(args) -> int:
    from botlite import retrieval

    app = _open_app(args, quiet=True)
    try:
        with app.database.connection_context():
            _print_json(retrieval.status())
    finally:
        app.close()
    return 0


def cmd_vectors_rebuild(args) -> int:
    from botlite import retrieval
    from botlite.errors import BotliteError

    app = _open_app(args, quiet=True)
    try:
        with app.database.connection_context():
            try:
                result = retrieval.rebuild(app, {"chatbot_id": args.bot} if args.bot else {})
            except BotliteError as exc:
                raise CliError(exc.message) from None
        _print_json(result)
    finally:
        app.close()
    return 0


def cmd_backup(args) -> int:
    import sqlite3

    from botlite import backup

    if args.keep is not None and args.keep < 1:
        raise CliError("--keep must be at least 1")
    app = _open_app(args, quiet=True)
    try:
        keep = app.settings.backup_keep if args.keep is None else args.keep
        try:
            result = backup.backup_all(app.settings.data_dir, app.settings.database_url,
                                       app.settings.broker_url, keep)
        except (backup.BackupError, sqlite3.Error, OSError) as exc:
            raise CliError("backup failed: %s" % exc) from None
        _print_json(result)
    finally:
        app.close()
    return 0


def _print_schedule_table(jobs) -> None:
    if not jobs:
        print("no schedule jobs")
    print("%-20s  %-7s  %-14s  %-20s  %-20s  %-9s  %s" % (
        "JOB", "ENABLED", "CRONTAB (UTC)", "NEXT RUN", "LAST RUN", "LAST", "ARGS"))
    for job in jobs:
        print("%-20s  %-7s  %-14s  %-20s  %-20s  %-9s  %s" % (
            job["name"], "yes" if job["enabled"] else "no", job["crontab"],
            job["next_run"] or "-", job["last_run"] or "-", job["last_status"] or "-",
            json.dumps(job["args"])))


def cmd_schedule_list(args) -> int:
    return _schedule_action(args, lambda s, runner: s.list_jobs(runner),
                            render=_print_json if args.json else _print_schedule_table)


def cmd_schedule_enable(args) -> int:
    return _schedule_action(args, lambda s, runner: s.update_job(runner, args.job,
                                                                 {"enabled": True}))


def cmd_schedule_disable(args) -> int:
    return _schedule_action(args, lambda s, runner: s.update_job(runner, args.job,
                                                                 {"enabled": False}))


def cmd_schedule_set(args) -> int:
    changes = {}
    if args.crontab is not None:
        changes["crontab"] = args.crontab
    if args.args is not None:
        try:
            changes["args"] = json.loads(args.args)
        except ValueError:
            raise CliError("--args must be a JSON list, e.g. '[30]'") from None
    if not changes:
        raise CliError("schedule set needs --crontab and/or --args")
    return _schedule_action(args, lambda s, runner: s.update_job(runner, args.job, changes))


def cmd_schedule_run(args) -> int:
    return _schedule_action(args, lambda s, runner: s.run_now(runner, args.job))


def _live_workers(settings) -> list[dict]:
    """Workers whose heartbeat is fresh; CliError when the queue cannot be read."""
    from botlite.runner import HEARTBEAT_MAX_AGE, TaskRunner

    try:
        runner = TaskRunner(settings.broker_url)
        try:
            return runner.storage.workers(HEARTBEAT_MAX_AGE)
        finally:
            runner.close()
    except Exception as exc:
        raise CliError("cannot open the task queue to check that no worker runs (%s: %s); "
                       "if you are sure botlite is stopped, run restore again with --force"
                       % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""
                          )) from None


def cmd_restore(args) -> int:
    import sqlite3

    from botlite import backup
    from botlite.runner import HEARTBEAT_MAX_AGE
    from botlite.settings import ensure_data_dir

    settings = _settings(args)
    try:
        marker = backup.inspect(args.file)
        ensure_data_dir(settings)
        alive = [] if args.force else _live_workers(settings)
        if alive:
            raise CliError("botlite is running (%d worker process(es) beat in the last %ds, "
                           "e.g. %s pid %s): stop every serve and worker first"
                           % (len(alive), HEARTBEAT_MAX_AGE, alive[0].get("hostname"),
                              alive[0].get("pid")))
        done = backup.restore(args.file, settings.database_url, settings.broker_url)
    except (backup.BackupError, sqlite3.Error, OSError) as exc:
        raise CliError("restore failed: %s" % exc if not isinstance(exc, backup.BackupError)
                       else str(exc)) from None
    print("restored the %s database %s from %s (made %s)%s" % (
        marker["kind"], done["restored"], args.file, marker["created_at"],
        "; the replaced one is kept as %s" % done["previous"] if done["previous"] else ""))
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
    _add_setting_flags(serve, "host", "port", "data_dir", "workers", "web_processes",
                       "trusted_proxy", "allowed_hosts", "database_url", "broker_url",
                       "shutdown_timeout", "log_level", "semantic")
    serve.add_argument("--no-worker", action="store_true",
                       help="serve HTTP only; tasks run in `python -m botlite worker` processes")
    serve.set_defaults(run=cmd_serve)

    worker = commands.add_parser(
        "worker", help="task workers and scheduler only (no web server)",
        description="Run task workers and the scheduler, for deployments with several "
                    "worker processes or machines.")
    _add_setting_flags(worker, "workers", "data_dir", "database_url", "broker_url",
                       "shutdown_timeout", "log_level", "semantic")
    worker.add_argument("--queues", metavar="A,B",
                        help="claim tasks from these queues only (default: all), "
                             "e.g. documents,websites")
    worker.set_defaults(run=cmd_worker)

    tasks = commands.add_parser(
        "tasks", help="list, show, revoke, retry or purge background tasks",
        description="Inspect and control background tasks. Task states are kept with "
                    "the queue (see --broker-url).")
    actions = tasks.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    listing = actions.add_parser("list", help="recent tasks, newest first")
    listing.add_argument("--status", help="PENDING, STARTED, RETRY, SUCCESS, FAILURE "
                                          "(the dead letters) or REVOKED")
    listing.add_argument("--name", help="only tasks of this name")
    listing.add_argument("--limit", default="50", help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_tasks_list)
    for action, helptext, handler in (
            ("show", "one task's state, result, error and traceback", cmd_tasks_show),
            ("revoke", "revoke a queued task, or ask a running one to stop", cmd_tasks_revoke),
            ("retry", "run a failed or revoked task again", cmd_tasks_retry)):
        sub = actions.add_parser(action, help=helptext)
        sub.add_argument("task_id", metavar="TASK_ID")
        sub.set_defaults(run=handler)
    purge = actions.add_parser("purge", help="drop every queued (not running) task of a queue")
    purge.add_argument("queue", metavar="QUEUE")
    purge.set_defaults(run=cmd_tasks_purge)
    _add_storage_flags(tasks, actions)

    sched = commands.add_parser(
        "schedule", help="list and change the periodic jobs (UTC crontabs)",
        description="List and change the periodic schedule kept in the database. Changes "
                    "take effect at the next minute in running processes; no restart.")
    jobs = sched.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    jobs.required = True
    listing = jobs.add_parser("list", help="every job: crontab, next and last run, last status")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_schedule_list)
    for action, helptext, handler in (
            ("enable", "enable a job (its next slot runs; missed ones don't)",
             cmd_schedule_enable),
            ("disable", "disable a job", cmd_schedule_disable),
            ("run", "enqueue a job's task now, outside its schedule", cmd_schedule_run)):
        sub = jobs.add_parser(action, help=helptext)
        sub.add_argument("job", metavar="JOB")
        sub.set_defaults(run=handler)
    setter = jobs.add_parser("set", help="change a job's crontab and/or args")
    setter.add_argument("job", metavar="JOB")
    setter.add_argument("--crontab", metavar="EXPR",
                        help="five fields, UTC, e.g. '*/10 * * * *' or '@daily'")
    setter.add_argument("--args", metavar="JSON", help="the task's positional args, e.g. '[30]'")
    setter.set_defaults(run=cmd_schedule_set)
    _add_storage_flags(sched, jobs)

    ingest = commands.add_parser(
        "ingest", help="add a file or website to a bot and wait until it is searchable",
        description="Add a file (PDF, DOCX, XLSX, CSV, TXT, MD, HTML) or a website to a "
                    "bot's knowledge and show a progress bar until it is ready (exit 0) or "
                    "failed (exit 1, with the reason). Without a running worker, it "
                    "processes the source itself.")
    ingest.add_argument("target", metavar="PATH_OR_URL")
    ingest.add_argument("--bot", default="default", help="the chatbot id (default: default)")
    ingest.add_argument("--no-wait", action="store_true",
                        help="queue it and return at once")
    ingest.add_argument("--max-pages", type=int, help="websites: at most this many pages "
                                                     "(default 20)")
    ingest.add_argument("--max-depth", type=int, help="websites: follow links this deep "
                                                     "(default 2)")
    _add_setting_flags(ingest, "data_dir", "database_url", "broker_url")
    ingest.set_defaults(run=cmd_ingest)

    chat = commands.add_parser(
        "chat", help="ask a bot a question (or chat in a small REPL)",
        description="Ask a bot one question and print the answer with its sources, or, "
                    "without a message, chat in a small REPL (/quit or Ctrl-D to leave).")
    chat.add_argument("message", nargs="*", metavar="MESSAGE")
    chat.add_argument("--bot", default="default", help="the chatbot id (default: default)")
    _add_setting_flags(chat, "data_dir", "database_url", "broker_url")
    chat.set_defaults(run=cmd_chat)

    queues = commands.add_parser(
        "queues", help="queued, scheduled and running tasks per queue, and dead letters",
        description="Show each queue's pending, scheduled and running tasks, and the "
                    "number of dead (failed) tasks.")
    _add_setting_flags(queues, "data_dir", "database_url", "broker_url")
    queues.set_defaults(run=cmd_queues)

    backup = commands.add_parser(
        "backup", help="back up the SQLite databases into <data dir>/backups now",
        description="Make an online backup of the app database and the task queue (when "
                    "they are SQLite) into <data dir>/backups, keeping the newest --keep of "
                    "each (the task backup_data does the same on its schedule).")
    backup.add_argument("--keep", type=int, default=None,
                        help="keep this many backups of each database "
                             "(default BOTLITE_BACKUP_KEEP, 7)")
    _add_setting_flags(backup, "data_dir", "database_url", "broker_url")
    backup.set_defaults(run=cmd_backup)

    restore = commands.add_parser(
        "restore", help="put a backup file back (botlite must be stopped)",
        description="Restore the app database or the task queue from a file made by "
                    "backup_data / `backup`. Stop every serve and worker first: it refuses "
                    "while one holds the database's running lock or a worker heartbeat is "
                    "fresh. The replaced database is kept as "
                    "<file>.before-restore-<UTC time>.")
    restore.add_argument("file", metavar="FILE")
    restore.add_argument("--force", action="store_true",
                         help="skip the check for live workers' heartbeats in the task "
                              "queue, e.g. when the queue cannot be opened (the running "
                              "lock is still checked)")
    _add_setting_flags(restore, "data_dir", "database_url", "broker_url")
    restore.set_defaults(run=cmd_restore)

    vec = commands.add_parser(
        "vectors", help="hybrid retrieval: vector progress per bot, or rebuild them",
        description="Show which retrieval answers (hybrid or BM25 only) and how many of "
                    "each bot's chunks have their vector; `vectors rebuild` forgets them "
                    "and queues embed_chunks to compute them again (BM25 answers meanwhile).")
    _add_setting_flags(vec, "data_dir", "database_url", "broker_url", "semantic")
    vec.set_defaults(run=cmd_vectors_status)
    vec_actions = vec.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    vec_status = vec_actions.add_parser("status", help="the default: progress per bot (JSON)")
    vec_status.set_defaults(run=cmd_vectors_status)
    vec_rebuild = vec_actions.add_parser("rebuild", help="forget the vectors and queue their "
                                                         "rebuild")
    vec_rebuild.add_argument("--bot", help="only this chatbot's (default: every bot's)")
    vec_rebuild.set_defaults(run=cmd_vectors_rebuild)
    for sub in (vec_status, vec_rebuild):
        _add_setting_flags(sub, "data_dir", "database_url", "broker_url", "semantic",
                           unset=argparse.SUPPRESS)

    token = commands.add_parser(
        "token", help="print the admin token",
        description="Print the admin token (BOTLITE_ADMIN_TOKEN, or the one generated "
                    "into <data dir>/admin_token).")
    _add_setting_flags(token, "data_dir")
    token.set_defaults(run=cmd_token)
    return parser


def _storage_line(exc: BaseException, args, detail: str | None = None) -> str | None:
    """What to do about a full or unwritable disk behind ``exc`` (or None), then
    in parentheses ``detail`` (default: the error the disk gave)."""
    from botlite import errors

    try:
        data_dir = _settings(args).data_dir if args is not None else None
    except SettingsError:
        data_dir = None
    failure = errors.storage_failure(exc, data_dir)
    if failure is None or data_dir is None:
        return None
    problem, cause = failure
    return "%s (%s)" % (errors.storage_error(problem, data_dir).message,
                        detail or errors.describe(cause))


def main(argv: list[str] | None = None) -> int:
    from botlite.app import StartupError

    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version
            code = int(exc.code or 0)
        else:
            code = args.run(args)
        sys.stdout.flush()  # here, where a reader gone is handled, not at exit
        return code
    except (CliError, SettingsError, StartupError) as exc:
        print("botlite: error: %s" % (_storage_line(exc, args, str(exc)) or exc),
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        # The reader went away (`schedule list | head`): nothing is wrong here; stop
        # writing, and keep Python from reporting it again when it flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a full or unwritable disk is the user's to fix: exit 2
        line = _storage_line(exc, args)
        if line is None:
            raise
        print("botlite: error: %s" % line, file=sys.stderr)
        return 2


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader is gone."""
    import select
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll(), or no real stdout
        return False
