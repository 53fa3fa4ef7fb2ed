"""A fork server for crash tests: one process imports the CLI (and whatever else is costly) once, then forks a
real child per ``deephash ...`` command, so a test can start and SIGKILL many real runs in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

SERVER = r"""
import json, os, signal, sys
from deephash.cli import main
for name in sys.argv[1:]:
    __import__(name)  # imported once here, not timed per run
print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "spawn":
        pid = os.fork()
        if pid == 0:
            fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1); os.dup2(fd, 2)
            os.environ.update(cmd.get("env", {}))
            code = 0
            try:
                main(cmd["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 0
            except BaseException:
                import traceback; traceback.print_exc(); code = 3
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
    elif cmd["op"] == "kill":
        os.kill(cmd["pid"], signal.SIGKILL)  # our own unreaped child: the pid cannot have been reused
        print("{}", flush=True)
    elif cmd["op"] == "wait":
        _, status = os.waitpid(cmd["pid"], 0)
        print(json.dumps({"killed": os.WIFSIGNALED(status), "code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class ForkServer:
    """``spawn(argv)`` starts ``deephash *argv`` as a forked child (output to a log file) and returns its pid;
    ``kill(pid)`` SIGKILLs it; ``wait(pid)`` returns {"killed": bool, "code": exit code}."""

    def __init__(self, logs: Path, preload=(), env: dict | None = None):
        self.logs, self.n = Path(logs), 0
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, *preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": SRC, **(env or {})})
        assert self.proc.stdout.readline() == "ready\n", "the fork server failed to start"

    def ask(self, **cmd) -> dict:
        with self.lock:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        assert line, "the fork server died"
        return json.loads(line)

    def spawn(self, argv, env=None, log: Path | None = None) -> tuple[int, Path]:
        if log is None:
            self.n += 1
            log = self.logs / f"run{self.n}.log"
        return self.ask(op="spawn", argv=[str(a) for a in argv], env=env or {}, log=str(log))["pid"], Path(log)

    def kill(self, pid: int) -> None:
        self.ask(op="kill", pid=pid)

    def wait(self, pid: int) -> dict:
        return self.ask(op="wait", pid=pid)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
