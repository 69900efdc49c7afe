import sys

from hiertcn.cli import main

sys.exit(main())
