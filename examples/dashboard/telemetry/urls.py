from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/devices/", views.device_list, name="device-list"),
    path("api/devices/<str:device_id>/readings/", views.reading_list, name="reading-list"),
    path("api/devices/<str:device_id>/command/", views.command, name="command"),
]
