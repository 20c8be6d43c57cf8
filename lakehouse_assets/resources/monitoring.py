"""Monitoring settings and the alert notifier (a Slack-compatible webhook) as Dagster resources.
The webhook URL is a secret (see `secrets.secret_setting`)."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

from dagster import ConfigurableResource

from lakehouse_assets.resources.secrets import secret_setting
from lakehouse_assets.settings import LakehouseSettings, MonitoringSettings

log = logging.getLogger(__name__)
WEBHOOK_ENV = "LAKEHOUSE_MONITORING__ALERT_WEBHOOK_URL"


class MonitoringResource(ConfigurableResource):
    """The monitoring settings and where drift and quality reports are written."""

    settings_json: str = "{}"  # MonitoringSettings of the platform settings, as JSON
    reports_dir: str

    @property
    def settings(self) -> MonitoringSettings:
        return MonitoringSettings.model_validate_json(self.settings_json)

    @property
    def reports(self) -> Path:
        return Path(self.reports_dir)


class AlertNotifier(ConfigurableResource):
    """POSTs ``{"text": ...}`` (what Slack, Mattermost and most chat webhooks accept) to the
    webhook; without one, alerts only go to the log. A failing webhook never fails the run that
    raised the alert: it is logged."""

    webhook_url: str = ""
    timeout_seconds: float = 5.0

    def send(self, title: str, details: str, severity: str = "error") -> bool:
        """POST the alert; whether the webhook took it."""
        text = f"[{severity}] {title}\n{details}"
        if not self.webhook_url:
            log.warning("alert (no webhook configured): %s", text)
            return False
        if not self.webhook_url.startswith(("http://", "https://")):
            log.error("alert webhook is not an http(s) URL; the alert was: %s", text)
            return False
        request = urllib.request.Request(  # noqa: S310 (an http(s) URL, checked above)
            self.webhook_url,
            data=json.dumps({"text": text}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 (an http(s) URL, checked above)
                request, timeout=self.timeout_seconds
            ) as response:
                return 200 <= response.status < 300
        except OSError as error:
            log.error("alert webhook failed (%s); the alert was: %s", error, text)
            return False


def monitoring_resources(settings: LakehouseSettings) -> dict[str, ConfigurableResource]:
    """The monitoring and alert resources from the settings (the webhook as a secret)."""
    webhook = secret_setting(WEBHOOK_ENV, settings.monitoring.alert_webhook_url)
    settings_json = settings.monitoring.model_dump_json(exclude={"alert_webhook_url"})
    return {
        "monitoring": MonitoringResource(
            settings_json=settings_json, reports_dir=str(settings.home_dir / "monitoring")
        ),
        "alerts": AlertNotifier(webhook_url=webhook),
    }
