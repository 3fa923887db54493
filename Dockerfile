# btkit bot image: `btkit live` / `btkit paper` and `btkit serve` (docs/deployment.md).
# Build from the repository root: docker build -t btkit .
FROM python:3.11-slim AS build
WORKDIR /src
COPY core ./core
COPY plugins ./plugins
RUN pip install --no-cache-dir --prefix=/install \
        "./core[serve]" ./plugins/btkit-telegram ./plugins/btkit-redis ./plugins/btkit-sqlite ./plugins/btkit-ccxt

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin btkit \
    && mkdir -p /bot/dump && chown -R btkit:btkit /bot
USER btkit
WORKDIR /bot
VOLUME ["/bot/dump"]
EXPOSE 8080
# the default command is the status API; the live service of docker-compose.yml overrides both
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status != 200)"]
ENTRYPOINT ["btkit"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--dump-dir", "/bot/dump"]
