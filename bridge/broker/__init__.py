"""The embedded MQTT broker (amqtt, MQTT 3.1.1) and the password hashes its users log in with."""
