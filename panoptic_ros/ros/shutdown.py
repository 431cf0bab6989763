"""SIGINT / SIGTERM handling of panoptic_node: a quiet exit within a bound, also while the model loads.

Why not rclpy's handlers: they shut the context down from a signal thread while the worker may be publishing,
and a Python-level ``KeyboardInterrupt`` lands wherever the main thread happens to be (inside a callback, in the
middle of the cleanup), which is where the tracebacks and the ``exit -2`` came from. Why not Python's handlers
alone: they run only when the main thread executes bytecode, so a signal during a long C call (ONNX export,
engine build) waits for that call to end.

So the C-level signal handler writes the signal number to a wakeup pipe (``signal.set_wakeup_fd``) and a watcher
thread acts on it at once:

- while **starting** (parameters, model load, warm-up, engine build): log one line, flush, exit with
  :data:`EXIT_SIGNAL` at once; nothing has been published, nothing needs cleaning up;
- while **running**: set :attr:`ShutdownSignals.requested` (the spin loop ends and the caller cleans up) and arm
  the watchdog;
- later signals are ignored (logged at debug level): the cleanup is not interrupted half-way.

The watchdog ends the process with ``os._exit`` if the cleanup is not done ``bound_s`` after it began (it begins
with the first signal or with :meth:`ShutdownSignals.begin_cleanup`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable

EXIT_SIGNAL = 0  # SIGINT / SIGTERM is the normal way to stop a node: exit code 0 (not 130 / 143), in every phase
EXIT_FATAL = 1  # startup error, or max_consecutive_failures reached
SHUTDOWN_BOUND_S = 1.5  # watchdog: signal -> os._exit at the latest; leaves ~0.5 s of the 2 s goal for the exit


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to save
            pass


def exit_if_stuck(seconds: float, exit_code: int, what: str) -> threading.Timer:
    """For a command whose work is done (panoptic-replay): ``os._exit(exit_code)`` if teardown exceeds ``seconds``.

    Fast DDS can block for ever in participant destruction when a peer leaves at the same moment (CI saw replay
    print its summary and never exit). Returns the daemon timer; cancel it if the process is meant to live on.
    """
    def give_up() -> None:
        print(f"{what}: teardown took over {seconds:g} s; exiting without waiting for it", file=sys.stderr)
        flush_std_streams()
        os._exit(exit_code)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer


class ShutdownSignals:
    """Owns SIGINT / SIGTERM for the process from :meth:`install` to :meth:`uninstall` (main thread only).

    Args:
        log: ``log(level, text)`` with level ``info`` / ``warning`` / ``debug`` (the node's ROS logger in main).
        bound_s: seconds from the start of the cleanup to a forced ``os._exit``.
        exit_process: the function that ends the process (``os._exit``; tests pass a recorder).
        signals: the signals to own.
    """

    def __init__(self, log: Callable[[str, str], None], bound_s: float = SHUTDOWN_BOUND_S,
                 exit_process: Callable[[int], None] = os._exit,
                 signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        if bound_s <= 0:
            raise ValueError(f"bound_s must be positive, got {bound_s}")
        self.log = log
        self.bound_s = float(bound_s)
        self.exit_process = exit_process
        self.signals = tuple(signals)
        self.requested = threading.Event()  # a signal asked the process to stop
        self.signal_name = ""
        self.exit_code = EXIT_SIGNAL
        self.wake: Callable[[], None] | None = None  # called on the first signal while running (wakes the executor)
        self._phase = "starting"
        self._lock = threading.Lock()
        self._watchdog: threading.Timer | None = None
        self._cleanup_started = -1.0
        self._previous: dict = {}
        self._previous_fd = -1
        self._pipe: tuple[int, int] | None = None
        self._watcher: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def install(self) -> "ShutdownSignals":
        """Take over the signals (call before anything slow: rclpy.init, the model load)."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        for sig in self.signals:
            # A Python-level handler is what makes CPython's C handler run (and write to the wakeup fd); it does
            # nothing itself: raising KeyboardInterrupt at an arbitrary bytecode is what this class avoids.
            self._previous[sig] = signal.signal(sig, _ignore)
        self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, name="panoptic_signals", daemon=True)
        self._watcher.start()
        return self

    def uninstall(self) -> None:
        """Give the signals back (for in-process callers such as tests) and stop the watcher and the watchdog."""
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.disarm()
        read_fd, write_fd = self._pipe
        self._pipe = None
        os.write(write_fd, b"\0")  # 0 is no signal: tells the watcher to end
        self._watcher.join(timeout=1.0)
        os.close(read_fd)
        os.close(write_fd)

    def running(self) -> None:
        """The node is up: from now on a signal stops the spin loop instead of ending the process at once."""
        with self._lock:
            if self._phase == "starting":
                self._phase = "running"
            requested = self.requested.is_set()
        if requested:  # a signal came between the last load step and this call: handle it as a running one
            self._arm(time.monotonic())

    def begin_cleanup(self, exit_code: int | None = None) -> None:
        """The cleanup starts now (signal, fatal error or the context shut down): arm the watchdog, ignore
        further signals. ``exit_code`` (default: :data:`EXIT_SIGNAL`) is what the watchdog exits with."""
        with self._lock:
            self._phase = "cleanup"
            if exit_code is not None:
                self.exit_code = exit_code
        self._arm(time.monotonic())

    def finish(self, code: int) -> None:
        """Cleanup done: flush and end the process with ``code`` at once. CPython's own teardown of torch's
        objects takes seconds on a loaded machine; there is nothing left for it to do."""
        self.disarm()
        flush_std_streams()
        self.exit_process(code)

    def disarm(self) -> None:
        with self._lock:
            watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()

    # -- internals -------------------------------------------------------------------------------------------
    def _arm(self, start: float) -> None:
        with self._lock:
            if self._watchdog is not None:
                return
            self._cleanup_started = start
            self._watchdog = threading.Timer(max(0.0, start + self.bound_s - time.monotonic()), self._expire)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _expire(self) -> None:
        with self._lock:
            if self._watchdog is None:  # disarmed meanwhile
                return
            code = self.exit_code
        self.log("warning", f"cleanup not finished {self.bound_s:g} s after it began; exiting now (code {code})")
        flush_std_streams()
        self.exit_process(code)

    def _watch(self) -> None:
        read_fd = self._pipe[0]
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            for number in data:
                if number == 0:
                    return
                self.on_signal(number)

    def on_signal(self, number: int) -> None:
        """What a signal does (called by the watcher thread; public so tests can drive it without signals)."""
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        with self._lock:
            first = not self.requested.is_set()
            phase = self._phase
            if first:
                self.requested.set()
                self.signal_name = name
        if not first:
            self.log("debug", f"{name} ignored: already shutting down")
            return
        if phase == "starting":
            self.log("info", f"{name} while starting (loading the model or building an engine): exiting")
            self.disarm()
            flush_std_streams()
            self.exit_process(EXIT_SIGNAL)
            return
        self.log("info", f"{name}: shutting down")
        self._arm(time.monotonic())
        wake = self.wake
        if wake is not None:
            try:
                wake()
            except Exception:  # noqa: BLE001 - the spin loop also polls `requested`; waking is an optimisation
                pass


def _ignore(signum, frame) -> None:
    """Python-level handler: the work is done by ShutdownSignals' watcher thread."""
