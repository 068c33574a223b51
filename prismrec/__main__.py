"""``python -m prismrec`` = the ``prismrec`` command (and what ``torchrun -m prismrec`` starts)."""

from prismrec.cli import main

main()
