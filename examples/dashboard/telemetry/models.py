from django.db import models


class Device(models.Model):
    """A device seen on MQTT. ``online`` follows its birth ("online") and last will
    ("offline") on devices/<id>/status; ``last_seen`` is the time of the last of those."""

    device_id = models.CharField(max_length=64, unique=True)
    online = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["device_id"]

    def __str__(self) -> str:
        return self.device_id


class Reading(models.Model):
    """One message on sensors/<id>/temperature; ``payload`` keeps it whole."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="readings")
    received_at = models.DateTimeField()
    celsius = models.FloatField()
    humidity = models.FloatField(null=True, blank=True)
    battery = models.FloatField(null=True, blank=True)
    payload = models.JSONField(default=dict)

    class Meta:
        ordering = ["-received_at"]
        # "The last N readings of a device" is the query the page and the JSON view make.
        indexes = [models.Index(fields=["device", "received_at"], name="reading_device_time")]

    def __str__(self) -> str:
        return f"{self.device} {self.celsius} °C at {self.received_at:%H:%M:%S}"
