"""Command line: a thin adapter over the public functions (STYLE.md: pytorch-fid).

    deepbelief train [--recipe default|hinton2006|hot2006] [--dataset ...] [-o model.safetensors]
    deepbelief evaluate MODEL [--dataset ...]
    deepbelief show-filters MODEL -o filters.png
    deepbelief sample MODEL [--label 3] [--grid N] [--steps 1000] -o samples.png
    deepbelief finetune MODEL --method up-down --epochs N [--resume]

Every subcommand is a pair ``add_<name>(subparsers)`` / ``cmd_<name>(args)``; modules that
add capabilities register theirs in ``COMMANDS``. Library errors are printed as one line
(``error: ...``) with exit status 2; no traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import sys

from deepbelief.cli import ecosystem, evaluate, generative, train
from deepbelief.errors import DeepBeliefError


COMMANDS = [
    (train.add_train, train.cmd_train, "train"),
    (evaluate.add_evaluate, evaluate.cmd_evaluate, "evaluate"),
    (evaluate.add_show_filters, evaluate.cmd_show_filters, "show-filters"),
    *generative.COMMANDS,  # sample, finetune
    *ecosystem.COMMANDS,  # plot, reproduce
]


def build_parser() -> argparse.ArgumentParser:
    from deepbelief import __version__

    parser = argparse.ArgumentParser(prog="deepbelief", description="RBMs and Deep Belief Networks",
                                     epilog="Errors are one line 'error: ...' with exit status 2; --debug (anywhere "
                                            "on the line) shows the traceback instead.")
    parser.add_argument("--version", action="version", version=f"deepbelief {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _cmd, _name in COMMANDS:
        add(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds like Ctrl-C: an atomic write
    in progress removes its temporary file and the last checkpoint stays intact."""


def _on_sigterm(signum, frame):
    raise Terminated()


#: what a user-facing command may raise besides the library's own errors: files the OS
#: refuses, values torch or numpy refuse, memory. Each becomes one line, exit status 2.
_USER_ERRORS = (DeepBeliefError, OSError, ValueError, TypeError, RuntimeError, MemoryError, OverflowError)


def main(argv: list[str] | None = None) -> int:
    import os
    import signal
    import threading

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("DEEPBELIEF_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    handlers = {name: cmd for _add, cmd, name in COMMANDS}
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    threads = _set_threads(getattr(args, "threads", None))
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt as exc:
        if debug:
            raise
        what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"{what}: stopped; files and checkpoints already written are intact (a run with "
              "--checkpoint-dir continues with --resume)", file=sys.stderr)
        return code
    except _USER_ERRORS as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _set_threads(threads)


def _set_threads(n: int | None) -> int | None:
    """Set torch's number of CPU threads to ``n`` (None: leave it) and return the number it
    had, so that ``main`` called in-process (tests, notebooks) puts it back."""
    if n is None:
        return None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def _one_line(exc: BaseException) -> str:
    """The error's message; errors not raised by deepbelief on purpose say what they are,
    on one line."""
    if isinstance(exc, DeepBeliefError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.strerror or exc}: {str(exc.filename)!r}"
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text} (--debug shows where)"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
