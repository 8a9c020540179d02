"""The errors a run reports in one line with exit status 2."""

from __future__ import annotations

from harness.build import WeightsError
from harness.checkpoint import CheckpointError
from harness.config import ConfigError
from harness.data import DataError

# Errors a run reports in one line with exit status 2 (bad input, a refused state, a full disk); any other
# exception is a crash (a traceback, exit status 1).
RUN_ERRORS = (ConfigError, DataError, CheckpointError, WeightsError, OSError)
