from mqttbridge.server.instances import AckTracker


def test_acks_go_out_in_arrival_order():
    sent: list[int] = []
    tracker = AckTracker(lambda mid, qos: sent.append(mid))
    tokens = [tracker.track(mid, 1) for mid in (1, 2, 3)]
    for token in tokens:
        token.remaining = 1
    tracker.release(tokens[2])
    tracker.release(tokens[1])
    assert sent == []  # 1 is still being handled: 2 and 3 must wait (MQTT 4.6)
    tracker.release(tokens[0])
    assert sent == [1, 2, 3]
    assert len(tracker) == 0


def test_message_delivered_to_two_instances_is_acked_when_both_are_done():
    sent: list[int] = []
    tracker = AckTracker(lambda mid, qos: sent.append(mid))
    token = tracker.track(7, 1)
    token.remaining = 2
    tracker.release(token)
    assert sent == []
    tracker.release(token)
    assert sent == [7]


def test_acks_from_a_lost_connection_are_not_sent_on_the_next():
    sent: list[int] = []
    tracker = AckTracker(lambda mid, qos: sent.append(mid))
    old = tracker.track(1, 1)
    old.remaining = 1
    tracker.connection_lost()
    new = tracker.track(1, 1)
    new.remaining = 1
    tracker.release(old)
    assert sent == []
    tracker.release(new)
    assert sent == [1]
