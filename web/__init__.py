"""Web page for staff. Not built yet; the REST API under ``/api`` already serves what it needs."""
