import sys

from hongyan.cli.main import main

sys.exit(main())
