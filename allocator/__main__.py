"""``python -m allocator`` runs the command line, as the ``allocator`` script does."""

from allocator.cli import main

main(prog_name="allocator")
