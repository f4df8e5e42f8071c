# Odoo 18 with what the crm_microsoft365 addon needs: jwcrypto, to seal OAuth codes to the
# daemon's public key. Debian's package matches the image's own cryptography.
FROM odoo:18
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-jwcrypto \
    && rm -rf /var/lib/apt/lists/*
USER odoo
