r"""``python -m cdrgraph ...`` (e.g. ``torchrun --nproc_per_node=2 -m cdrgraph train CONFIG``)."""
import sys

from cdrgraph.cli.main import main

if __name__ == '__main__':
    sys.exit(main())
