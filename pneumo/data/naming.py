"""Patient id and pneumonia subtype from Kermany file names.

The data set has no metadata file: who the patient is and whether the pneumonia is
bacterial or viral is written only in the file name. Grouping splits by patient depends on
getting this right.
"""

from __future__ import annotations

import re
from pathlib import PurePath

# person1946_bacteria_4874.jpeg -> patient 1946, bacteria
_PERSON = re.compile(r"^person(?P<pid>\d+)_(?P<subtype>bacteria|virus)(?:_\d+)*$", re.IGNORECASE)
# IM-0115-0001.jpeg -> IM-0115; NORMAL2-IM-1427-0001.jpeg -> NORMAL2-IM-1427. The two series
# number their patients separately, so the prefix is part of the id.
_NORMAL = re.compile(r"^(?P<pid>(?:NORMAL2-)?IM-\d+)-\d+$", re.IGNORECASE)

NORMAL = "normal"
UNKNOWN = "unknown"


def parse_name(filename: str, label: int) -> tuple[str, str]:
    """Return (patient id, subtype) for a file name; label 1 = pneumonia.

    Names that follow neither pattern become their own patient (the file stem), so they
    still split correctly, just without grouping.
    """
    stem = PurePath(filename).stem
    if m := _PERSON.match(stem):
        return m["pid"], m["subtype"].lower()
    if m := _NORMAL.match(stem):
        return m["pid"].upper(), NORMAL
    return stem, NORMAL if label == 0 else UNKNOWN
