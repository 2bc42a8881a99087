# One image for all three services: `leadrouter ingest|scoring|handoff`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 leadrouter
COPY --from=build /install /usr/local
COPY deploy/playbook.example.yaml /etc/leadrouter/playbook.yaml
ENV LEADROUTER_PLAYBOOK=/etc/leadrouter/playbook.yaml \
    LEADROUTER_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER 10001
ENTRYPOINT ["leadrouter"]
CMD ["--help"]
