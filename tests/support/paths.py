"""Where the checkout, the real-world captures and the golden files are."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
# The real captures live beside the checkout (../shared/fixtures/real); never copied into the repo.
REAL_FIXTURES = Path(os.environ.get("SKEWWATCH_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))
GOLDEN = REPO / "tests" / "golden"
