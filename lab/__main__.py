"""`python -m lab` is `halab`."""

from lab.cli import main

main()
