"""The teardown bound ends a process whose teardown hangs, with the exit code it had decided on."""
import subprocess
import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_a_hanging_teardown_ends_with_the_decided_exit_code():
    code = ("import time; from panoptic_ros.ros.shutdown import exit_if_stuck; print('done', flush=True); "
            "exit_if_stuck(0.5, 3, 'hang-test'); time.sleep(60)")
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 3 and run.stdout == "done\n"
    assert "hang-test: teardown took over" in run.stderr
    assert time.monotonic() - t0 < 20


def test_a_cancelled_bound_lets_the_process_live_on():
    code = ("import time; from panoptic_ros.ros.shutdown import exit_if_stuck; "
            "t = exit_if_stuck(0.3, 3, 'x'); t.cancel(); time.sleep(0.8); print('alive')")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout == "alive\n" and run.stderr == ""
