"""Entry point of the worker child process: ``python -m sandbox.engine._child`` (see `worker`)."""

from sandbox.engine.worker import _child_main

if __name__ == "__main__":  # pragma: no cover - runs in the child process
    _child_main()
