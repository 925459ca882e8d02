# mwl-broker: DICOM Modality Worklist broker. Built and run by compose.yaml; see README "Production".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns nothing but the data folder.
RUN groupadd --system --gid 10001 broker \
    && useradd --system --uid 10001 --gid broker --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin broker

# Install from a scratch copy of the sources, so only the installed package is importable.
COPY pyproject.toml README.md /tmp/src/
COPY app /tmp/src/app
COPY dicom_scp /tmp/src/dicom_scp
COPY hl7_ingest /tmp/src/hl7_ingest
COPY web /tmp/src/web
RUN pip install /tmp/src && rm -rf /tmp/src

WORKDIR /app
# BROKER_STORAGE_DIR defaults to data/storage under the working directory: /app/data/storage.
RUN mkdir -p /app/data/storage && chown -R broker:broker /app/data
USER broker

# 11112 DICOM, 2575 HL7 v2 MLLP, 8000 REST API and web page.
EXPOSE 11112 2575 8000

CMD ["mwl-broker", "serve"]
