FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY models models
COPY personio personio
COPY ratelimit ratelimit
COPY sandbox sandbox
COPY services services
COPY tasks tasks
COPY worker worker
COPY cli cli
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 sync
USER sync
ENV PERSONIO_SYNC_DATA_DIR=/home/sync/data
ENTRYPOINT ["personio-sync"]
