# Image for docker-compose.yml: Airflow 3.3.2 (Python 3.11) + copydata's pinned requirements + copydata.
# Not built or run by the project's CI: Docker is not available on its dev/CI machines.
FROM apache/airflow:3.3.2-python3.11

USER root
# Tools the emulator and the host-side operators call (losetup, mount, mkfs.xfs/ext4, fuse), plus DB
# clients. The database servers themselves are not in this image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        xfsprogs e2fsprogs util-linux fuse3 postgresql-client-15 mariadb-client curl ca-certificates jq \
 && apt-get autoremove -yqq --purge \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

USER airflow
# The same fully pinned lock as the local .venv (requirements.txt, made with uv pip compile).
COPY --chown=airflow:root requirements.txt /opt/copydata/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/copydata/requirements.txt

# copydata itself, editable, so that docker-compose.yml can mount ./include over /opt/copydata/include.
COPY --chown=airflow:root pyproject.toml /opt/copydata/pyproject.toml
COPY --chown=airflow:root include /opt/copydata/include
RUN pip install --no-cache-dir --no-deps -e /opt/copydata
