# The m365sync daemon: the package and nothing else; configuration comes from the
# environment and /etc/m365sync, its keys live in the m365sync-data volume.
FROM python:3.11-slim
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY daemon ./daemon
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/m365sync m365sync \
    && mkdir -p /var/lib/m365sync && chown m365sync /var/lib/m365sync
USER m365sync
ENV XDG_DATA_HOME=/var/lib
ENTRYPOINT ["m365sync"]
CMD ["run"]
