"""``python -m mlpjit``: the same as the ``mlpjit`` command."""

from .cli import main

main()
