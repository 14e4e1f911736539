"""`python -m keel` is the `keel` command."""

from keel.service.cli import main

main()
