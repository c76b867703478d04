"""The engine's local control API: consoles and scripts attach to a running engine over a Unix socket.

``wire`` is the JSON format, ``openapi`` the published schema, ``server`` the aiohttp service the engine runs,
``client`` what a console or script uses to attach.
"""
