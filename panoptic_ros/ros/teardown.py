"""A bound on how long a ROS process may take to tear down.

Fast DDS can block for ever in participant/writer destruction when a peer disappears at the same moment (seen in
CI: replay printed its summary, then never exited). A process that has finished its work must still exit, so the
teardown runs under a timer that ends the process with the exit code it already decided on.
"""
from __future__ import annotations

import os
import sys
import threading


def exit_if_stuck(seconds: float, exit_code: int, what: str) -> threading.Timer:
    """Start a daemon timer that flushes stdio and ``os._exit(exit_code)`` after ``seconds``.

    Only for process entry points: cancel the timer if the process is meant to live on."""
    def give_up() -> None:
        print(f"{what}: teardown took over {seconds:.0f} s; exiting without waiting for it", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer
