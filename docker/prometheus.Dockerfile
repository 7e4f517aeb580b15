# Prometheus with the compose demo's scrape configuration copied in and owned by the image's
# user (nobody, 65534), which reads it whatever its mode in the checkout (a bind-mounted file of
# a checkout made under umask 077 is 0600 and owned by the host user).
# Built by docker-compose.yml with this directory as the context.
FROM prom/prometheus:v2.53.0
COPY --chown=65534:65534 prometheus.yml /etc/prometheus/prometheus.yml
