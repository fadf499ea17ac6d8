FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvirt-dev libvirt-clients pkg-config gcc openssh-client osinfo-db libldap2-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY . .
ENV PANEL_VAR_DIR=/data PANEL_STATIC_ROOT=/app/staticfiles
RUN PANEL_SECRET_KEY=build python manage.py collectstatic --noinput -v0
EXPOSE 8000 6080
CMD ["uvicorn", "panel.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--lifespan", "off", "--no-proxy-headers", "--ws-max-size", "2097152", "--timeout-graceful-shutdown", "5"]
