# One image for every feedlab process: the gateway, both model services and the trainer job.
# Real datasets (../shared/data) are never copied in: .dockerignore keeps the context to the repo.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app

# CPU-only torch first (its own layer, so code changes don't re-download it); the version is the
# one pyproject.toml pins, and pip then treats that requirement as already satisfied.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY feedlab ./feedlab
COPY gateway ./gateway
COPY experiments ./experiments
COPY models ./models
COPY analysis ./analysis
COPY storage ./storage
RUN pip install . \
    && useradd --create-home --uid 1000 feedlab \
    && mkdir -p /app/artifacts /app/reports /app/spool \
    && chown -R feedlab:feedlab /app/artifacts /app/reports /app/spool

USER feedlab
EXPOSE 8000
CMD ["feedlab", "serve", "--host", "0.0.0.0", "--port", "8000"]
