"""A warm launcher for the drills' gateway and orchestrator processes.

Importing the gateway or the orchestrator costs seconds of CPU (FastAPI, SQLAlchemy, pydantic
schemas), and the drills start and restart those processes about a dozen times. This server pays
the imports once, then forks a fresh child for every start request. The child is a process of
its own (own session, own log, the requested environment) that runs the very ``main()`` of
``python -m gateway`` / ``python -m orchestrator``; a signal or a SIGKILL reaches it alone.

Protocol (``python -m tests.faults.forkserver``): one JSON object per line on stdin,
``{"module": "gateway" | "orchestrator", "env": {...}, "log": path, "cwd": path}``; the server
answers each with the child's pid on a line of its own. Children are reaped automatically.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

MAINS = {"gateway": "gateway.__main__", "orchestrator": "orchestrator.__main__"}


def _child(main: Callable[[], Any], request: dict[str, Any]) -> NoReturn:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["module"]]
        result = main()
        code = result if isinstance(result, int) else 0
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """Import both services, then fork one child per request line until stdin closes."""
    mains = {name: importlib.import_module(path).main for name, path in MAINS.items()}
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(mains[request["module"]], request)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
