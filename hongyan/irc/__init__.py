"""The IRC protocol core, sans-I/O (like ``hongyan.xmpp``): IRCv3 lines and one client
connection's state machine. It imports no asyncio, socket, database or clock."""
