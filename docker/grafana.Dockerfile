# Grafana with the compose demo's provisioning and dashboard copied in and owned by the image's
# user (grafana, 472), which reads them whatever their mode in the checkout (a bind-mounted file
# of a checkout made under umask 077 is 0600 and owned by the host user).
# Built by docker-compose.yml with this directory as the context.
FROM grafana/grafana:11.1.0
COPY --chown=472:0 grafana/provisioning /etc/grafana/provisioning
COPY --chown=472:0 grafana/dashboards /var/lib/grafana/dashboards
