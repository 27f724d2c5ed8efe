"""The command line: parses arguments and calls the API; nothing else lives here.

Exit codes, the same for every command:
    0 done, 2 bad input or usage, 3 infeasible, 4 no solution within the limits, 1 a bug.
A traceback is shown only with --debug.
"""

from __future__ import annotations

import functools
import sys
import traceback

import click
from rich.console import Console

from allocator.errors import AllocatorError, InputError, ModelTooLargeError

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION = 0, 1, 2, 3, 4

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class ExitWith(Exception):
    """Raised by a command to end with a given exit code after printing its output."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def guarded(fn):
    """Map errors to exit codes and messages; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return fn(*args, **kwargs)
        except ExitWith as e:
            sys.exit(e.code)
        except InputError as e:
            if debug:
                traceback.print_exc()
            err_console.print(str(e), markup=False)
            sys.exit(EXIT_INPUT)
        except ModelTooLargeError as e:
            err_console.print(f"error: {e}", markup=False)
            sys.exit(EXIT_INPUT)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            sys.exit(130)
        except (AllocatorError, Exception) as e:  # a bug: say so, exit 1
            if debug:
                traceback.print_exc()
            err_console.print(
                f"internal error: {type(e).__name__}: {e}\n"
                "this is a bug in allocator; re-run with --debug for the traceback",
                markup=False,
            )
            sys.exit(EXIT_BUG)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="allocator")
def main(debug: bool) -> None:
    """allocator: where and when AI workloads run across leased data centers."""


# Commands are registered below, one per stage of the flow. Each command only parses its
# arguments, calls the API and renders what it returns.
