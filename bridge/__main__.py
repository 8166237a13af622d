from mqttbridge.cli.main import main

main()
