"""Reading members of a downloaded package archive (a wheel is a zip file)."""

from __future__ import annotations

import zipfile

import numpy as np

from synthloc.errors import IntegrityError
from synthloc.imageio import decode_image


def read_image_member(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    """Decode one image stored in the archive; IntegrityError names archive and member."""
    try:
        data = archive.read(member)
    except KeyError as exc:
        raise IntegrityError(f"{archive.filename}: {member} is missing from the archive") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise IntegrityError(f"{archive.filename}: cannot read {member} ({exc})") from exc
    try:
        return decode_image(data, member)
    except Exception as exc:
        raise IntegrityError(f"{archive.filename}: {member} is not a readable image") from exc
