"""The cluster tests' helper scripts (``stop_ray``, ``local_cluster``, ...) sit beside them
and are also run as scripts (``python stop_ray.py MARKER``, ``submit_and_audit.py``): this
folder goes on ``sys.path`` so the tests import them by name (tests are not a package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
