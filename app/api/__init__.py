"""REST API (FastAPI). Routers call services; domain errors map to HTTP through one table."""
