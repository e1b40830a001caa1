"""One module per ``art-smoothing`` command. Each command turns its options into library objects
(:mod:`art_smoothing.cli.build`), calls the library, and writes and prints the results
(:mod:`art_smoothing.cli.runs`, :mod:`art_smoothing.cli.report`); it returns its
:class:`~art_smoothing.cli.runs.Run` so that ``rerun`` can compare the new files with the old ones."""

from art_smoothing.cli.commands.certify import certify_command
from art_smoothing.cli.commands.compare import compare_command
from art_smoothing.cli.commands.evaluate import evaluate_command
from art_smoothing.cli.commands.list import list_command
from art_smoothing.cli.commands.rerun import rerun_command
from art_smoothing.cli.commands.train import train_command

#: the commands of the ``art-smoothing`` group
COMMANDS = (list_command, train_command, certify_command, evaluate_command, compare_command, rerun_command)

__all__ = ["COMMANDS"]
