"""AckTracker: acknowledgements in arrival order, once every holder released the message."""

from mqttbridge.server.acks import AckTracker


def _tracker() -> tuple[AckTracker, list[int]]:
    sent: list[int] = []
    return AckTracker(lambda mid, qos: sent.append(mid)), sent


def test_acks_go_out_in_arrival_order():
    tracker, sent = _tracker()
    tokens = [tracker.track(mid, 1) for mid in (1, 2, 3)]
    for token in tokens:
        tracker.hold(token)
    tracker.release(tokens[2])
    tracker.release(tokens[1])
    assert sent == []  # 1 is still being handled: 2 and 3 must wait (MQTT 4.6)
    tracker.release(tokens[0])
    assert sent == [1, 2, 3]
    assert len(tracker) == 0


def test_message_delivered_to_two_instances_is_acked_when_both_are_done():
    tracker, sent = _tracker()
    token = tracker.track(7, 1)
    tracker.hold(token)
    tracker.hold(token)
    tracker.release(token)
    assert sent == []
    tracker.release(token)
    assert sent == [7]


def test_acks_from_a_lost_connection_are_not_sent_on_the_next():
    tracker, sent = _tracker()
    old = tracker.track(1, 1)
    tracker.hold(old)
    tracker.connection_lost()
    new = tracker.track(1, 1)
    tracker.hold(new)
    tracker.release(old)
    assert sent == []
    tracker.release(new)
    assert sent == [1]


def test_a_message_nobody_holds_is_acked_when_dispatch_settles_it():
    tracker, sent = _tracker()
    token = tracker.track(4, 2)
    tracker.settle(token)
    assert sent == [4]


def test_settling_a_held_message_leaves_it_to_its_holders():
    tracker, sent = _tracker()
    token = tracker.track(5, 1)
    tracker.hold(token)
    tracker.settle(token)
    assert sent == []
    tracker.release(token)
    assert sent == [5]


def test_an_unrouted_message_waits_for_one_still_being_handled_before_it():
    tracker, sent = _tracker()
    handled_later = tracker.track(1, 1)
    tracker.hold(handled_later)
    tracker.settle(handled_later)
    tracker.settle(tracker.track(2, 1))
    assert sent == []
    tracker.release(handled_later)
    assert sent == [1, 2]
