"""DICOM adapter: Verification and Modality Worklist C-FIND SCP on pynetdicom."""
