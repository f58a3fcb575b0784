"""Processes in a network namespace of their own (`unshare -rn`), whose only interface is its
loopback: nothing they listen on is reachable from elsewhere, and no other process holds a port."""

import os
import shutil
import signal
import subprocess
import sys
import time

SKIP_REASON = "needs `unshare -rn` and `ip` (util-linux, iproute2) for a network namespace of its own"


def available() -> bool:
    """Whether `unshare -rn` and `ip` can make one here."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True,
                          timeout=30).returncode == 0


def run_python(script: str, args, *, cwd, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Runs `python -c script *args` in a new network namespace with its loopback up, as a process
    group of its own, and kills the whole group when it ends or has run `timeout` seconds: nothing it
    started outlives it. Its output is in cwd/namespace.out and cwd/namespace.err, and returned.

    Raises:
        subprocess.TimeoutExpired: it ran past `timeout` (and was killed, with all it started).
    """
    command = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" -c "$@"', sys.executable, script,
               *map(str, args)]
    out_path, err_path = os.path.join(cwd, "namespace.out"), os.path.join(cwd, "namespace.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        # Waited for without reaping it (WNOWAIT): its pid, the group's id, stays its own until the group is killed.
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(command, timeout)
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with open(out_path) as out, open(err_path) as err:
        return subprocess.CompletedProcess(command, proc.returncode, out.read(), err.read())
