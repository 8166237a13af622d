"""Readings are stored in batches: one ``bulk_create`` per transaction for every device's
readings that arrived meanwhile, written in Django's ORM thread, never on the event loop.
``await readings.save(reading)`` returns once the row is committed, so the device's QoS 1
message is acknowledged only after its reading is stored. While the database is unreachable
the writer retries with back-off and ``save()`` keeps waiting: the message stays
unacknowledged and the broker redelivers it if the bridge goes away meanwhile.
"""

from mqttbridge.django.batch import BatchWriter

from .models import Reading

# A batch goes as soon as rows stop coming (every handler that had one is waiting for it), at
# 500 rows, or after 50 ms while rows keep coming; rows arriving during a commit make the next
# batch, so batches grow with the load. The wait matters: each reading's acknowledgement waits
# for its batch, and the broker lets only so many messages await the bridge's (Mosquitto: 20).
#
# Devices publish at their own pace, so readings arrive one by one: without a linger each
# commit would hold a row or two. Lingering 10 ms makes ~10 rows per commit at 1,000 msg/s and
# cut the bridge's CPU per reading (docs/benchmarks.md, the dashboard in a browser); the page is
# fed before the commit (live.py), so only the acknowledgement waits those 10 ms more.
readings = BatchWriter(Reading, max_batch=500, max_delay=0.05, linger=0.01)
