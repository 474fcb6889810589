"""``python -m yarn_gateway.minicluster`` = ``yarn-gateway-minicluster``."""

import sys

from yarn_gateway.minicluster.cli import main

sys.exit(main())
