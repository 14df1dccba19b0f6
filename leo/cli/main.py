"""The ``leo`` command: a group whose commands (one module each in ``leo.cli``) load lazily.

Bad input gets one line on stderr and exit code 2 (never a traceback); outputs are written
atomically; leo's own warnings are printed with the result.
"""

from __future__ import annotations

import os
import sys

import click

from leo.cli.lazy import LazyCommand
from leo.cli.notes import held_notes
from leo.errors import LeoInputError
from leo.exitcodes import ExitCode

EXIT_BAD_INPUT = int(ExitCode.BAD_INPUT)

#: Every command: name -> (its click command as "module:attribute", the line ``leo --help`` shows).
COMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("leo.cli.verify:verify",
               "Report, per hidden layer, which units are stably active, inactive or unstable."),
    "compress": ("leo.cli.compress:compress",
                 "Remove stable units and write a smaller model that computes the same function on the box."),
    "check": ("leo.cli.check:check", "Compare two models on the box."),
    "export": ("leo.cli.export:export",
               "Write the MILP of one unit's bound problem as .lp or .mps, for any solver."),
    "property": ("leo.cli.property:property_command",
                 "Exact verification of a VNN-LIB property; the file describes the UNSAFE outputs."),
    "audit": ("leo.cli.audit:audit",
              "Re-check a certificate from scratch: file hashes, every stable claim re-proved (interval, LP, "
              "MILP), the reduction replayed."),
    "train": ("leo.train:train_command", "Train an MNIST MLP with an l1 penalty (and the RS loss); needs torch."),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leo", message="leo %(version)s")
def cli() -> None:
    """Prove which ReLU units are stable on an input box, and remove them losslessly.

    MODEL is a PyTorch state_dict checkpoint of an nn.Sequential MLP, a TorchScript
    archive, an ONNX file, or builtin:NAME for a model shipped with leo.
    """


def _register() -> None:
    for name, (target, text) in COMMANDS.items():
        cli.add_command(LazyCommand(name, target, text))


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    with held_notes() as notes:
        code = _run(argv)
    if code != EXIT_BAD_INPUT:  # bad input stays one line: its notes are dropped
        notes.flush_to_stderr()
    return code


#: What click raises for a group run with no command (click >= 8.2; older clicks print the help themselves).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _run(argv: list[str] | None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="leo", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("leo: aborted", err=True)
        return 130
    except _NO_ARGS_IS_HELP as exc:  # a bare ``leo`` (or ``leo GROUP``) asks for help: it gets it, exit 0
        click.echo(exc.ctx.get_help() if exc.ctx is not None else cli.get_help(click.Context(cli, info_name="leo")))
        return 0
    except click.UsageError as exc:
        ctx = f" (see '{exc.ctx.command_path} --help')" if exc.ctx and exc.ctx.command_path else ""
        click.echo(f"leo: error: {exc.format_message()}{ctx}", err=True)
        return EXIT_BAD_INPUT
    except (click.ClickException, LeoInputError, OSError, MemoryError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"leo: error: {message}", err=True)
        return EXIT_BAD_INPUT
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("LEO_DEBUG"):
            raise
        click.echo(f"leo: internal error: {type(exc).__name__}: {exc} (set LEO_DEBUG=1 for a traceback)", err=True)
        return int(ExitCode.INTERNAL)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
