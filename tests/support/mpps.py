"""MPPS data sets as modalities send them (PS3.4 Table F.7.2-1), for tests."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from app.domain.dicom_json import JsonDataset, validate_json_dataset


def ssas_item(study_uid: str, accession: str = "", rp_id: str = "", sps_id: str = "") -> Dataset:
    item = Dataset()
    item.StudyInstanceUID = study_uid
    item.ReferencedStudySequence = []
    item.AccessionNumber = accession
    item.RequestedProcedureID = rp_id
    item.RequestedProcedureDescription = ""
    item.ScheduledProcedureStepID = sps_id
    item.ScheduledProcedureStepDescription = ""
    item.ScheduledProtocolCodeSequence = []
    return item


def n_create(*items: Dataset, status: str = "IN PROGRESS", **overrides: Any) -> Dataset:
    ds = Dataset()
    ds.ScheduledStepAttributesSequence = list(items) or [
        ssas_item("1.2.3.4.1", "A1", "RP1", "SPS1")
    ]
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "P1"
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "F"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT01"
    ds.PerformedStationName = "CT ROOM 1"
    ds.PerformedLocation = "RAD"
    ds.PerformedProcedureStepStartDate = "20261201"
    ds.PerformedProcedureStepStartTime = "083500"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepDescription = "CT HEAD"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = []
    for keyword, value in overrides.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def n_set(status: str = "COMPLETED", *, end: bool = True, reason: bool = False) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    if end:
        ds.PerformedProcedureStepEndDate = "20261201"
        ds.PerformedProcedureStepEndTime = "090000"
    series = Dataset()
    series.PerformingPhysicianName = ""
    series.ProtocolName = "HEAD"
    series.OperatorsName = ""
    series.SeriesInstanceUID = "1.2.3.4.1.1"
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    series.ReferencedImageSequence = []
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    ds.PerformedSeriesSequence = [series]
    if reason:
        code = Dataset()
        code.CodeValue = "110514"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Incorrect worklist entry selected"
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [code]
    return ds


def as_json(ds: Dataset) -> JsonDataset:
    return validate_json_dataset(ds.to_json_dict())
