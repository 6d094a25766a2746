"""``python -m ditau`` = the ``ditau`` command."""

from ditau.cli import main

main()
