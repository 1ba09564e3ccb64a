"""A classroom kiosk in Tkinter that tracks lesson time with timeback-client.

Run it from the repository root with ``python -m examples.kiosk_app`` (``--help`` for the
options). Rooms: `lessons` (the catalogue), `progress` (the local SQLite progress store),
`backend` (the embedded emulator or a real backend), `app` (the Tk screens).
"""
