"""Worker threads and the scheduler inside the calling process.

Huey's consumer runs the workers; this module starts it without taking over the
process's signal handlers (the CLI owns those), keeps a heartbeat in the
ledger, restarts dead worker threads, and stops gracefully.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from huey.consumer import Consumer

from botlite.runner.core import TaskRunner

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_MAX_AGE = 30.0


class _EmbeddedConsumer(Consumer):
    def _set_signal_handlers(self) -> None:
        """The embedding process decides what signals do."""


class Runtime:
    def __init__(self, runner: TaskRunner, workers: int = 2, *, periodic: bool = True,
                 shutdown_timeout: float = 10.0,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL) -> None:
        self.runner = runner
        self.workers = workers
        self.shutdown_timeout = shutdown_timeout
        self.heartbeat_interval = heartbeat_interval
        self.worker_id = "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
        self.started_at = time.time()
        self.consumer = _EmbeddedConsumer(
            runner.huey, workers=workers, periodic=periodic, initial_delay=0.05,
            backoff=1.15, max_delay=1.0, shutdown_timeout=shutdown_timeout)
        self._stopping = threading.Event()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop,
                                           name="botlite-heartbeat", daemon=True)

    def info(self) -> dict:
        return {"hostname": socket.gethostname(), "pid": os.getpid(),
                "workers": self.workers, "started_at": self.started_at}

    def beat(self) -> None:
        self.runner.ledger.beat(self.worker_id, self.info())

    def start(self) -> None:
        self.beat()
        self.consumer.start()
        self._heartbeat.start()
        logger.info("started %d worker thread(s) as %s", self.workers, self.worker_id)

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.heartbeat_interval):
            try:
                self.consumer.check_worker_health()
                self.beat()
            except Exception:
                logger.exception("heartbeat failed; trying again in %ss",
                                 self.heartbeat_interval)

    def stop(self) -> bool:
        """Stop taking tasks; wait up to the shutdown timeout for running ones.

        Returns True when every worker finished in time.
        """
        self._stopping.set()
        self.consumer.stop(graceful=True)
        finished = not any(thread.is_alive() for _, thread in self.consumer.worker_threads)
        if not finished:
            logger.warning("workers still busy after %ss", self.shutdown_timeout)
        try:
            self.runner.ledger.forget(self.worker_id)
        except Exception:
            logger.exception("could not remove worker %s from the ledger", self.worker_id)
        return finished
