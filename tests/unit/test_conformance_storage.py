"""The Storage SCP section of the conformance statement follows the code and the settings."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom.presentation import AllStoragePresentationContexts

from app.config import Settings
from dicom_scp.conformance import render
from dicom_scp.server import build_ae
from dicom_scp.status import StoreStatus
from dicom_scp.storage import STORAGE_SOP_CLASSES

# Kept as received: uncompressed, deflated and the common compressed syntaxes.
AS_RECEIVED = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_every_storage_class_is_listed_and_supported() -> None:
    text = render(_settings())
    supported = {
        str(cx.abstract_syntax): list(cx.transfer_syntax)
        for cx in build_ae(_settings().dicom).supported_contexts
    }
    assert len(STORAGE_SOP_CLASSES) == len(AllStoragePresentationContexts) > 128
    for uid in STORAGE_SOP_CLASSES:
        assert f"| {uid} |" in text
        assert supported[uid][0] == ExplicitVRLittleEndian
        assert set(AS_RECEIVED) <= set(supported[uid])
    for status in StoreStatus:
        assert f"| 0x{int(status):04X} | {status.name} |" in text


def test_storage_policies_follow_the_settings() -> None:
    default = render(_settings())
    assert "the first copy is kept" in default and "kept until deleted" in default
    changed = render(
        _settings(
            storage_duplicate="replace",
            storage_retention_days=30,
            storage_retention_requires_commitment=True,
        )
    )
    assert "the new copy replaces the file" in changed
    assert "deleted 30 days after its last instance arrived, and only once" in changed
