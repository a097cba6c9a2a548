"""`python -m tpv.cli ...` (e.g. under `accelerate launch`)."""

from tpv.cli import main

main()
