"""``python -m qtasks_core`` runs the ``qtasks`` command line."""

from .cli import main

main()
