"""What a replica composes from: the object library and the cleaned backgrounds, built once."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

from synth_service.backgrounds import BackgroundBank, BackgroundSettings
from synth_service.library import LibrarySettings, ObjectLibrary
from synthloc.coco import CocoDataset


@dataclass
class SynthState:
    """Library + backgrounds + their combined hash; picklable, so workers load it once."""

    library: ObjectLibrary
    backgrounds: BackgroundBank
    library_hash: str

    @classmethod
    def build(
        cls,
        coco_path: Path,
        library_settings: LibrarySettings | None = None,
        background_seed: int = 0,
    ) -> SynthState:
        """Cut the objects of a COCO file and clean its images into background tiles."""
        library, sources = ObjectLibrary.from_coco(
            CocoDataset.load(coco_path), library_settings or LibrarySettings()
        )
        bank = BackgroundBank.build(
            sources.pixels, sources.annotated, BackgroundSettings(), seed=background_seed
        )
        digest = hashlib.sha256(
            f"{library.content_hash()}:{bank.content_hash()}".encode()
        ).hexdigest()
        return cls(library, bank, digest[:16])

    def save(self, path: Path) -> None:
        """Pickle to a file (for worker processes, never for exchange with other parties)."""
        with path.open("wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: Path) -> SynthState:
        """Read a state written by save() in this same replica."""
        with path.open("rb") as fh:
            return pickle.load(fh)
