"""pyiceberg's FileIO for a table built in a scratch folder but named where it will be read from.

taxi_iceberg.write_table gives its catalog `py-io-impl` = this module's StagingFileIO, with the
table's location and its scratch copy as two catalog properties. Imported only there: it needs pyiceberg.
"""

from __future__ import annotations

from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.typedef import EMPTY_DICT, Properties

LOCATION = "lakemagic.location"  # where the table's readers find it: a folder, or an s3:// URL
STAGING = "lakemagic.staging"  # the local folder its files are written into


class StagingFileIO(PyArrowFileIO):
    """Local files: what is named under the table's location is read and written in its scratch copy, and
    keeps the name it is given (the one the metadata records). Any other name is refused."""

    @staticmethod
    def parse_location(location: str, properties: Properties = EMPTY_DICT) -> tuple[str, str, str]:
        named, staging = properties[LOCATION].rstrip("/"), properties[STAGING]
        if not location.startswith(named + "/"):
            raise ValueError(f"pyiceberg asked for {location}, outside the table it writes at {named}")
        return "file", "", staging + location[len(named):]
