"""Readings are stored in batches: one ``bulk_create`` per transaction for every device's
readings that arrived meanwhile, written in Django's ORM thread, never on the event loop.
``await readings.save(reading)`` returns once the row is committed, so the device's QoS 1
message is acknowledged only after its reading is stored. While the database is unreachable
the writer retries with back-off and ``save()`` keeps waiting: the message stays
unacknowledged and the broker redelivers it if the bridge goes away meanwhile.
"""

from mqttbridge.django.batch import BatchWriter

from .models import Reading

# 500 rows or 50 ms, whichever comes first: at a few readings a second the page sees each one
# within 50 ms; at thousands a second the database sees a few transactions.
readings = BatchWriter(Reading, max_batch=500, max_delay=0.05)
