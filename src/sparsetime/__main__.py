"""``python -m sparsetime`` (and ``torchrun -m sparsetime``): the command line."""
import sys

from .cli import main

sys.exit(main())
