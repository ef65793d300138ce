"""``python -m edgekd``: the same command line as the ``edgekd`` entry point."""

from edgekd.cli import main

main()
