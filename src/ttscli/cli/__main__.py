"""`python -m ttscli.cli`: the same as the `ttscli` command."""

from . import main

main()
