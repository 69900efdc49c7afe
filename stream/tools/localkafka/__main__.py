import sys

from stream.tools.localkafka.broker import main

sys.exit(main())
