"""The apps of the original QTasks' own tests (``tests/apps``), imports changed."""
