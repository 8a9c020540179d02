import sys

from harness.campaign.cli import main

sys.exit(main())
