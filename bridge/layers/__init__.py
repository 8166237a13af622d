"""Channel layers tuned for thousands of device instances: ``memory.InMemoryChannelLayer`` and
``redis.RedisChannelLayer``, and the Redis socket timeouts every channels_redis layer needs
(``redis_timeouts``). Name them in ``CHANNEL_LAYERS`` by their full path, e.g.
``"mqttbridge.layers.memory.InMemoryChannelLayer"``."""
