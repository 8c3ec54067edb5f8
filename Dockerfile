FROM python:3.11-slim
WORKDIR /app
# The versions pinned in constraints.txt (`make constraints`), the service only: no
# embedded Redis (the `embedded` extra) and no test tools. Set REDIS_URL and DATABASE_URL.
COPY pyproject.toml README.md constraints.txt ./
COPY config config
COPY models models
COPY personio personio
COPY ratelimit ratelimit
COPY sandbox sandbox
COPY services services
COPY tasks tasks
COPY worker worker
COPY cli cli
RUN pip install --no-cache-dir -c constraints.txt . && useradd --create-home --uid 10001 sync
USER sync
ENV PERSONIO_SYNC_DATA_DIR=/home/sync/data
ENTRYPOINT ["personio-sync"]
