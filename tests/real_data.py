"""Where the integration tests find the real Office-Caltech-10 images: ``$DAHASH_OFFICE_CALTECH``,
by default ``../shared/data/office_caltech_10`` beside the checkout (where CI has it too)."""

from __future__ import annotations

import os
from pathlib import Path

OFFICE_CALTECH = Path(os.environ.get("DAHASH_OFFICE_CALTECH")
                      or Path(__file__).resolve().parents[2] / "shared" / "data" / "office_caltech_10")
