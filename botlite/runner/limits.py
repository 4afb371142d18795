"""Time limits for tasks.

Soft limit: after ``soft_time_limit`` seconds ``SoftTimeLimitExceeded`` is raised
inside the task, which may catch it to clean up. In a worker thread this uses
``PyThreadState_SetAsyncExc``, which takes effect at the next Python bytecode: a
task blocked inside one long C call sees it when that call returns.

Hard limit: threads cannot be killed, so a task with ``hard_time_limit`` runs in
a child process (multiprocessing "forkserver": forked from a clean, single-threaded
server, not from the threaded worker). The worker thread waits for its answer and
kills it when the hard limit passes; the attempt then fails with
``HardTimeLimitExceeded`` and is retried or marked failed like any other error,
whatever the task code did with its soft limit. Inside the child the soft limit is
a SIGALRM in its main thread.

A child does not outlive its worker: it exits as soon as the worker process is
gone (killed with -9, say), and a worker that stops releases its unfinished tasks
for a re-run and then kills their children (`kill_children`; the attempt ends with
`Abandoned`, not as a failure): an attempt handed to another worker goes on here
for at most the moment between the two.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from typing import Any

ORPHAN_CHECK = 1.0
"""Seconds between a child's checks that its worker process is still there."""

_children: set = set()  # this process's live task children
_killed: set = set()    # ...of which `kill_children` killed these
_children_lock = threading.Lock()


class Abandoned(BaseException):
    """The attempt's child was killed because its task was released for a re-run:
    not a failure (no retry, no on_error, no state: the re-run owns the task).
    A BaseException, so Huey's failure path does not see it."""


class SoftTimeLimitExceeded(Exception):
    """The task ran past its soft time limit."""


class HardTimeLimitExceeded(Exception):
    """The task ran past its hard time limit and its process was killed."""


class ChildTaskError(Exception):
    """A task that ran in a child process failed there."""

    def __init__(self, type_name: str, message: str, child_traceback: str, permanent: bool,
                 expected: bool = False):
        super().__init__("%s: %s" % (type_name, message))
        self.type_name = type_name
        self.child_traceback = child_traceback
        self.permanent = permanent
        self.child_expected = expected  # core.expected_failure of the child's exception


def _raise_in_thread(thread_id: int, exc_type: type) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc_type))


@contextlib.contextmanager
def soft_time_limit(seconds: float | None):
    """Raise SoftTimeLimitExceeded in this thread after ``seconds``."""
    if not seconds:
        yield
        return
    guard = threading.Lock()
    state = {"running": True}
    thread_id = threading.get_ident()

    def expire():
        with guard:
            if state["running"]:
                _raise_in_thread(thread_id, SoftTimeLimitExceeded)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with guard:
            state["running"] = False
        timer.cancel()


_context = None
_context_lock = threading.Lock()


def _mp_context():
    global _context
    with _context_lock:
        if _context is None:
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["botlite.runner"])
        return _context


def run_in_child(runner, spec, task_id: str, args: list, kwargs: dict,
                 retries_left: int = 0) -> Any:
    """Run ``spec.fn`` in a child process; kill it after ``spec.hard_time_limit``."""
    ctx = _mp_context()
    parent_end, child_end = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main, daemon=True,
        args=(child_end, runner.url, runner.name, runner.child_setup, spec.fn.__module__,
              spec.fn.__name__, task_id, args, kwargs, spec.soft_time_limit, retries_left,
              os.getpid()))
    with _children_lock:
        process.start()
        _children.add(process)
    child_end.close()
    try:
        if not parent_end.poll(spec.hard_time_limit):
            process.kill()
            raise HardTimeLimitExceeded("killed after the hard time limit of %ss"
                                        % spec.hard_time_limit)
        try:
            kind, payload = parent_end.recv()
        except EOFError:
            process.join(5)
            with _children_lock:
                if process in _killed:
                    raise Abandoned("released for a re-run") from None
            raise ChildTaskError("ChildDied", "the task's process exited with code %s"
                                 % process.exitcode, "", False) from None
    finally:
        parent_end.close()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        with _children_lock:
            _children.discard(process)
            _killed.discard(process)
    if kind == "ok":
        return payload
    raise ChildTaskError(*payload)


def kill_children() -> int:
    """Kill this process's task children (their tasks were released for a re-run);
    how many were running."""
    with _children_lock:
        running = [process for process in _children if process.exitcode is None]
        for process in running:
            _killed.add(process)
            process.kill()
    return len(running)


def _exit_when_orphaned(worker_pid: int) -> None:
    """In a child: end this process as soon as the worker that started it has
    exited (also when nobody reaps it yet: a pidfd is readable from then on, and
    names that process, not a later one with its number). Without pidfds, check
    every `ORPHAN_CHECK` seconds."""
    import select

    try:
        pidfd = os.pidfd_open(worker_pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # not Linux 5.3+
        pidfd = None

    def watch():
        if pidfd is not None:
            select.select([pidfd], [], [])
            os._exit(1)
        while True:
            time.sleep(ORPHAN_CHECK)
            try:
                os.kill(worker_pid, 0)
            except (ProcessLookupError, PermissionError):  # gone, or the number reused
                os._exit(1)

    # SIGALRM (the soft limit) must reach the main thread, not this one.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        threading.Thread(target=watch, name="botlite-orphan-check", daemon=True).start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})


def _child_main(conn, url, name, child_setup, module, fn_name, task_id, args, kwargs,
                soft_limit, retries_left=0, worker_pid=None):
    from botlite.runner import core

    def on_alarm(signum, frame):
        raise SoftTimeLimitExceeded("soft time limit of %ss exceeded" % soft_limit)

    # A group of its own: Ctrl-C and a SIGTERM to the worker's process group reach
    # the worker, which decides (it lets the task finish, or kills this process).
    # A SIGTERM sent to this process itself ends it (the attempt fails as
    # ChildDied and is retried like any failure).
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if worker_pid is not None:
        _exit_when_orphaned(worker_pid)
    try:
        if child_setup is not None:
            setup_path, setup_arg = child_setup
            setup_module, setup_name = setup_path.split(":")
            getattr(importlib.import_module(setup_module), setup_name)(setup_arg)
        runner = core.TaskRunner(url, name, migrate=False)  # no DDL: the worker did it
        core._current.runner, core._current.task_id = runner, task_id
        core._current.retries_left = retries_left
        fn = getattr(importlib.import_module(module), fn_name)
        if soft_limit:
            signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, soft_limit)
        value = fn(*args, **kwargs)
        signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send(("ok", core.to_json(value)))
    except BaseException as exc:
        permanent = isinstance(exc, core.PermanentError) or getattr(exc, "permanent", False)
        conn.send(("error", (type(exc).__name__, str(exc), traceback.format_exc(),
                             permanent, core.expected_failure(exc))))
    finally:
        conn.close()
