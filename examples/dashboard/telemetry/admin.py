from django.contrib import admin

from .models import Device, Reading


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["device_id", "online", "last_seen"]
    list_filter = ["online"]
    search_fields = ["device_id"]


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    list_display = ["device", "received_at", "celsius", "humidity", "battery"]
    list_filter = ["device"]
    date_hierarchy = "received_at"
    # A select of every device per reading would be slow with many devices.
    raw_id_fields = ["device"]
    list_select_related = ["device"]
